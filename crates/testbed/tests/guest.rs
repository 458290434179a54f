//! Privileged, end to end: a QEMU guest (TCG) boots Debian's kernel with the testbed's
//! initramfs inside a test namespace and reports over its serial console.

use std::time::{Duration, Instant};

use netbind_testbed::{Guest, GuestImage, GuestNic, Netns, require_privileges};

#[test]
fn a_guest_on_a_tap_configures_a_static_address_and_pings_the_namespace() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox"]).unwrap();
    let t = Instant::now();
    GuestImage::get().unwrap();
    eprintln!("guest image ready in {:?}", t.elapsed());

    let ns = Netns::new("guest").unwrap();
    ns.sh("ip tuntap add dev tap0 mode tap && ip addr add 192.168.77.1/24 dev tap0 && ip link set tap0 mtu 1400 up")
        .unwrap();
    let script = r#"
eth=$(nic_by_mac 02:00:00:00:77:02)
result nic $eth
result mtu $(cat /sys/class/net/$eth/mtu)
ip link set $eth up
ip addr add 192.168.77.2/24 dev $eth
wait_link $eth 5
if ping -c 3 -W 2 192.168.77.1 > /dev/null; then result ping ok; else result ping fail; fi
"#;
    let nic = GuestNic::Tap {
        ifname: "tap0".into(),
        mac: "02:00:00:00:77:02".into(),
        mtu: Some(1400),
    };
    let mut guest = Guest::boot(&ns, &[nic], script).unwrap();
    let boot = guest.wait_ready(Duration::from_secs(60)).unwrap();
    let results = guest.wait_done(Duration::from_secs(60)).unwrap();
    eprintln!(
        "guest boot (QEMU start → NICs up): {boot:?}; script done after {:?}",
        guest.uptime()
    );
    assert_eq!(
        results.get("ping").map(String::as_str),
        Some("ok"),
        "{}",
        guest.console()
    );
    assert_eq!(results["nic"], "eth0");
    assert_eq!(results["mtu"], "1400", "host_mtu reaches the guest driver");
    assert_eq!(results["exit"], "0");
    assert!(
        guest.wait_exit(Duration::from_secs(10)).unwrap(),
        "poweroff -f ends QEMU"
    );
    eprintln!("console:\n{}", guest.console());
}

#[test]
fn a_guest_that_never_finishes_is_reported_with_its_console() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox"]).unwrap();
    let ns = Netns::new("guest").unwrap();
    let mut guest = Guest::boot(&ns, &[], "echo started; sleep 600").unwrap();
    guest.wait_for("started", Duration::from_secs(60)).unwrap();
    let err = guest
        .wait_for("DONE", Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not print \"DONE\""), "{err}");
    assert!(
        err.contains("started"),
        "the error carries the console: {err}"
    );
    let pid = guest.pid();
    drop(guest);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "QEMU is killed on drop"
    );
}

#[test]
fn the_guest_dhcp_hook_applies_address_routes_mtu_and_dns_from_a_real_server() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox"]).unwrap();
    let ns = Netns::new("guest").unwrap();
    ns.sh("ip tuntap add dev tap0 mode tap && ip addr add 192.168.78.1/24 dev tap0 && ip link set tap0 up")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start 192.168.78.10\nend 192.168.78.20\ninterface tap0\n\
             lease_file {0}/leases\npidfile {0}/pid\n\
             static_lease 02:00:00:00:78:02 192.168.78.10\n\
             option subnet 255.255.255.0\noption router 192.168.78.1\n\
             option dns 192.168.78.53\noption mtu 1300\noption domain example.test\n\
             option staticroutes 10.0.0.0/8 192.168.78.1, 0.0.0.0/0 192.168.78.1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("leases"), b"").unwrap();
    let _server = ns
        .spawn(&["busybox", "udhcpd", "-f", conf.to_str().unwrap()])
        .unwrap();

    let script = r#"
eth=$(nic_by_mac 02:00:00:00:78:02)
dhcp4 $eth
. /run/dhcp-$eth.env
result address $ip/$mask
result mtu $(cat /sys/class/net/$eth/mtu)
result dns $(grep nameserver /etc/resolv.conf | cut -d' ' -f2)
result default "$(ip route | grep ^default)"
result net10 "$(ip route | grep ^10.0.0.0/8)"
"#;
    let mut guest =
        Guest::boot(&ns, &[GuestNic::tap("tap0", "02:00:00:00:78:02")], script).unwrap();
    let r = guest.wait_done(Duration::from_secs(90)).unwrap();
    let console = guest.console();
    assert_eq!(
        r.get("address").map(String::as_str),
        Some("192.168.78.10/24"),
        "{console}"
    );
    assert_eq!(r["mtu"], "1300", "{console}");
    assert_eq!(r["dns"], "192.168.78.53", "{console}");
    assert!(
        r["default"].starts_with("default via 192.168.78.1 dev eth0"),
        "{console}"
    );
    assert!(
        r["net10"].starts_with("10.0.0.0/8 via 192.168.78.1 dev eth0"),
        "{console}"
    );
}
