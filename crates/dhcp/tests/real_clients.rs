//! The runner against real clients (privileged: namespaces).
//!
//! A "pod" namespace holds the server side of a veth pair, addressed like masquerade's
//! bridge (10.0.2.1/24, fd10:0:2::1/120); a "guest" namespace holds the other end with
//! the guest's MAC. The runner serves DHCPv4, DHCPv6 and router advertisements on the pod
//! end; busybox `udhcpc`, ISC `dhclient -6` and the guest namespace's own kernel (which
//! accepts router advertisements) are the clients.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netbind_dhcp::runner::{self, Service, Stop, Totals};
use netbind_plan::model::{ClasslessRoute, Dhcp4Config, Dhcp6Config, RaConfig};
use netbind_testbed::Netns;

const GUEST_MAC: &str = "02:00:00:00:00:0a";

struct Link {
    pod: Netns,
    guest: Netns,
}

fn link() -> Link {
    let pod = Netns::new("dhcppod").expect("pod namespace");
    let guest = Netns::new("dhcpvm").expect("guest namespace");
    pod.sh(&format!(
        "ip link add k6t-eth0 type veth peer name eth0 netns {guest} && \
         ip link set k6t-eth0 address 02:00:00:00:00:00 mtu 1450 up && \
         ip addr add 10.0.2.1/24 dev k6t-eth0 && ip addr add fd10:0:2::1/120 dev k6t-eth0 nodad",
        guest = guest.name()
    ))
    .expect("pod side of the link");
    guest
        .sh(&format!("ip link set eth0 address {GUEST_MAC} mtu 1450 up"))
        .expect("guest side of the link");
    Link { pod, guest }
}

fn dhcp4() -> Dhcp4Config {
    Dhcp4Config {
        interface: "k6t-eth0".into(),
        server_address: Ipv4Addr::new(10, 0, 2, 1),
        client_mac: GUEST_MAC.into(),
        address: "10.0.2.2/24".parse().unwrap(),
        router: Some(Ipv4Addr::new(10, 0, 2, 1)),
        classless_routes: vec![ClasslessRoute {
            destination: "0.0.0.0/0".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 2, 1),
        }],
        dns: vec![Ipv4Addr::new(10, 96, 0, 10)],
        search: vec!["shop.svc.cluster.local".into()],
        domain_name: Some("shop.svc.cluster.local".into()),
        hostname: "web".into(),
        mtu: 1450,
        ntp: vec![],
        tftp_server: None,
        boot_file: None,
        private_options: vec![],
        lease_seconds: 999 * 86400,
    }
}

/// Runs services opened inside `ns`; stops and joins them on drop.
struct Running {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<Totals>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Running {
    /// Stops the services, as `up` does on SIGTERM: each must end by itself, not panic.
    fn finish(mut self) -> Vec<Totals> {
        self.stop.stop();
        self.threads
            .drain(..)
            .map(|t| t.join().expect("a service panicked while stopping"))
            .collect()
    }
}

fn serve(ns: &Netns, open: impl FnOnce() -> Vec<Service> + Send + 'static) -> Running {
    let path = ns.path();
    let services = std::thread::spawn(move || {
        netbind_testbed::enter(path).expect("enter namespace");
        open()
    })
    .join()
    .expect("open services");
    let stop = Stop::new();
    let threads = services
        .into_iter()
        .map(|s| {
            let stop = stop.clone();
            std::thread::spawn(move || s.run(stop))
        })
        .collect();
    Running { stop, threads }
}

#[test]
fn udhcpc_gets_the_planned_lease() {
    let l = link();
    let server = serve(&l.pod, || {
        vec![runner::open_dhcp4(&dhcp4()).expect("dhcp4")]
    });
    let script = "#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip subnet=$subnet router=$router dns=$dns mtu=$mtu host=$hostname domain=$domain lease=$lease\"\nexit 0\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = l
        .guest
        .exec(&[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "5",
            "-T",
            "1",
            "-O",
            "mtu",
            "-s",
            path.to_str().unwrap(),
        ])
        .expect("udhcpc");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ip=10.0.2.2 subnet=255.255.255.0 router=10.0.2.1 dns=10.96.0.10 mtu=1450 host=web domain=shop.svc.cluster.local lease=86313600"),
        "udhcpc said: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals = server.finish();
    assert!(totals[0].answered >= 2, "offer and ack: {totals:?}");
}

#[test]
fn dhclient_gets_the_planned_ipv6_address() {
    let l = link();
    let cfg = Dhcp6Config {
        interface: "k6t-eth0".into(),
        client_mac: GUEST_MAC.into(),
        address: "fd10:0:2::2".parse().unwrap(),
        dns: vec!["fd00:10:96::a".parse().unwrap()],
        search: vec!["shop.svc.cluster.local".into()],
        lease_seconds: 999 * 86400,
    };
    let server = serve(&l.pod, move || {
        vec![runner::open_dhcp6(&cfg).expect("dhcp6")]
    });
    // Wait for the guest's link-local address to leave DAD, dhclient needs it.
    wait_until(Duration::from_secs(5), || {
        l.guest
            .sh("ip -6 addr show dev eth0 scope link | grep -v tentative | grep -q inet6")
            .is_ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("lease");
    let pid = dir.path().join("pid");
    let out = l
        .guest
        .exec(&[
            "timeout",
            "20",
            "dhclient",
            "-6",
            "-1",
            "-v",
            "-lf",
            lease.to_str().unwrap(),
            "-pf",
            pid.to_str().unwrap(),
            "-sf",
            "/bin/true",
            "eth0",
        ])
        .expect("dhclient");
    let leases = std::fs::read_to_string(&lease).unwrap_or_default();
    if let Ok(p) = std::fs::read_to_string(&pid) {
        let _ = std::process::Command::new("kill").arg(p.trim()).status();
    }
    assert!(
        leases.contains("iaaddr fd10:0:2::2") && leases.contains("fd00:10:96::a"),
        "lease file: {leases}\ndhclient: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let totals = server.finish();
    assert!(totals[0].answered >= 2, "advertise and reply: {totals:?}");
}

#[test]
fn guest_kernel_takes_route_and_mtu_from_router_advertisements() {
    let l = link();
    let cfg = RaConfig {
        interface: "k6t-eth0".into(),
        router_mac: "02:00:00:00:00:00".into(),
        prefix: "fd10:0:2::/120".parse().unwrap(),
        autonomous: false,
        managed: true,
        other_config: true,
        router_lifetime_seconds: 1800,
        mtu: 1400,
        rdnss: vec!["fd00:10:96::a".parse().unwrap()],
        dnssl: vec!["shop.svc.cluster.local".into()],
    };
    l.guest
        .sh("sysctl -qw net.ipv6.conf.eth0.accept_ra=2")
        .expect("accept RAs");
    let server = serve(&l.pod, move || vec![runner::open_ra(&cfg).expect("ra")]);
    // The first RA goes out at start; solicit once more in case it beat the guest's DAD.
    let mut route = String::new();
    let found = wait_until(Duration::from_secs(15), || {
        route = l.guest.sh("ip -6 route show default").unwrap_or_default();
        route.contains("via fe80::") && route.contains("proto ra")
    });
    assert!(found, "no default route from RA: {route:?}");
    let mtu = l
        .guest
        .sh("cat /proc/sys/net/ipv6/conf/eth0/mtu")
        .unwrap_or_default();
    assert_eq!(mtu.trim(), "1400");
    let prefix = l
        .guest
        .sh("ip -6 route show fd10:0:2::/120")
        .unwrap_or_default();
    assert!(
        prefix.contains("dev eth0"),
        "on-link prefix missing: {prefix:?}"
    );
    // Stopping the RA service after the guest's solicitations: it ends by itself (it
    // used to panic in std's address conversion when the stop ended its receive).
    let totals = server.finish();
    assert!(totals[0].answered >= 1, "{totals:?}");
}

fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}
