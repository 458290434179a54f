//! An engine in a CNI pod's namespace, on a unix socket a QEMU guest attaches to: the
//! set-up of the VM tests (`vm.rs`, `migrate.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use netbind_testbed::PodFixture;
use netbind_usernet::run::{Attach, RunOptions, run};
use netbind_usernet::{EngineConfig, PortSpec};

/// The engine thread, stopped even when the test fails.
pub struct Running {
    stop: Arc<AtomicBool>,
    engine: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    /// The engine in the pod's namespace on `socket` (bound here, before QEMU starts:
    /// QEMU does not wait for it), keeping its counters in `dir/stats`.
    pub fn start(
        pod: &PodFixture,
        cfg: EngineConfig,
        nic: Nic,
        socket: &Path,
        dir: &Path,
    ) -> Running {
        Running::start_in(&pod.pod, cfg, nic, socket, dir)
    }

    /// As [`Running::start`], in namespace `ns`.
    pub fn start_in(
        ns: &netbind_testbed::Netns,
        cfg: EngineConfig,
        nic: Nic,
        socket: &Path,
        dir: &Path,
    ) -> Running {
        // The engines' log in the test's captured output (shown when a test fails: the
        // engine's thread inherits the capture of the test that spawns it); the first
        // engine of the test process sets it up.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .try_init();
        let listener = netbind_usernet::run::listen_unix(socket).expect("listen");
        let stop = Arc::new(AtomicBool::new(false));
        // QEMU connects once it starts: for `VhostUserFd` the engine's thread waits for
        // that connection (or the stop) before it runs.
        let mut waits_for = None;
        let attach = match nic {
            Nic::Stream => Some(Attach::Listener {
                listener,
                one_off: false,
            }),
            Nic::VhostUserFd => {
                waits_for = Some(listener);
                None
            }
            Nic::VhostUser => {
                let mut repair = socket.as_os_str().to_owned();
                repair.push(".repair");
                let path: &Path = repair.as_ref();
                let repair = netbind_usernet::migrate::repair::Repair::new(
                    netbind_usernet::run::listen_unix(path).expect("repair socket"),
                    path,
                );
                Some(Attach::VhostUser {
                    listener,
                    one_off: false,
                    repair: Some(repair),
                })
            }
        };
        let (stopped, ns_path, stats) = (stop.clone(), ns.path(), dir.join("stats"));
        let engine = std::thread::spawn(move || {
            netbind_testbed::enter(ns_path).unwrap();
            let attach = match (attach, waits_for) {
                (Some(a), _) => a,
                (None, Some(l)) => match accept_unless(&l, &stopped) {
                    Some(conn) => Attach::VhostUserFd(conn.into()),
                    None => return "engine never started: no QEMU connected".to_string(),
                },
                (None, None) => unreachable!("every NIC has its attachment"),
            };
            let opts = RunOptions {
                pcap: None,
                signals: false,
                stop: stopped,
                stats: Some(stats),
                harden: None,
                busy_poll: netbind_usernet::run::DEFAULT_BUSY_POLL,
            };
            match run(cfg, attach, opts) {
                Ok(c) => c.to_string(),
                Err(e) => format!("engine failed: {e}"),
            }
        });
        Running {
            stop,
            engine: Some(engine),
        }
    }

    /// Stops the engine; its last counters.
    pub fn stop(mut self, dir: &Path) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.engine.take() {
            eprintln!("engine: {}", t.join().unwrap());
        }
        read_stats(&dir.join("stats"))
    }
}

/// The first connection to `l`, unless `stop` is set first.
fn accept_unless(
    l: &std::os::unix::net::UnixListener,
    stop: &AtomicBool,
) -> Option<std::os::unix::net::UnixStream> {
    l.set_nonblocking(true).ok()?;
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((conn, _)) => return conn.set_nonblocking(false).ok().map(|()| conn),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    None
}

/// The engine's stats file (`name value` lines).
pub fn read_stats(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
        .collect()
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.engine.take() {
            let _ = t.join();
        }
    }
}

/// The engine's configuration as `netbind usernet` derives it inside the pod: the pod's
/// addresses and gateways, its resolver, the forwarded port.
pub fn engine_config(pod: &PodFixture, forwarded: &[u16]) -> EngineConfig {
    engine_config_from(pod.result(), forwarded)
}

/// The configuration from a CNI result (a pod's addresses and gateways).
pub fn engine_config_from(r: &netbind_testbed::CniResult, forwarded: &[u16]) -> EngineConfig {
    let mut cfg = EngineConfig {
        guest4: r.ipv4().map(|n| match n {
            ipnet::IpNet::V4(n) => n,
            ipnet::IpNet::V6(_) => unreachable!(),
        }),
        guest6: r.ipv6().map(|n| match n {
            ipnet::IpNet::V6(n) => n,
            ipnet::IpNet::V4(_) => unreachable!(),
        }),
        gateway4: match r.gateway(false) {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        },
        gateway6: match r.gateway(true) {
            Some(IpAddr::V6(g)) => Some(g),
            _ => None,
        },
        tcp_ports: forwarded
            .iter()
            .map(|p| PortSpec::parse(&p.to_string()).unwrap())
            .collect(),
        ..EngineConfig::default()
    };
    cfg.fill_gateways();
    cfg.set_resolvers(&["10.88.0.10".parse().unwrap()]);
    cfg
}

/// How the guest's NIC reaches the engine.
#[derive(Clone, Copy)]
pub enum Nic {
    /// `-netdev stream` on a unix socket.
    Stream,
    /// `-netdev vhost-user`: the guest's virtqueues in shared memory.
    VhostUser,
    /// The same, the engine handed QEMU's control connection already made (`--vhost-user
    /// --fd N`, as QEMU's `-netdev passt` starts it): here the connection QEMU makes to
    /// the socket is taken by the test and given to the engine.
    VhostUserFd,
}
