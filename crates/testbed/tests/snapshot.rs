//! Privileged: namespace snapshots, the yardstick of "down leaves the namespace exactly as
//! CNI left it".

use netbind_testbed::{PodFixture, require_privileges};

#[test]
fn a_no_op_leaves_the_snapshot_identical_even_after_traffic() {
    require_privileges(&["ip", "nft", "busybox", "/usr/lib/cni/bridge"]).unwrap();
    let f = PodFixture::new().unwrap();
    let before = f.pod.snapshot().unwrap();
    // Traffic moves counters, neighbour tables and bridge timers, not configuration.
    let peer = f.peer_ip(false).unwrap().to_string();
    f.pod
        .exec(&["busybox", "ping", "-c", "2", "-i", "0.2", "-W", "2", &peer])
        .unwrap();
    let after = f.pod.snapshot().unwrap();
    assert_eq!(before.diff(&after), None, "{before}");
    assert!(before.to_string().contains("inet 10.88.0.2/24"), "{before}");
}

#[test]
fn a_change_shows_in_the_snapshot_and_undoing_it_restores_equality() {
    require_privileges(&["ip", "nft", "/usr/lib/cni/bridge"]).unwrap();
    let f = PodFixture::new().unwrap();
    let before = f.pod.snapshot().unwrap();

    f.pod
        .sh("ip link add nbx0 type bridge && ip addr add 10.9.9.1/24 dev nbx0 && nft add table ip nbtest")
        .unwrap();
    let changed = f.pod.snapshot().unwrap();
    let diff = before.diff(&changed).expect("the change is visible");
    assert!(diff.contains("nbx0"), "{diff}");
    assert!(diff.contains("10.9.9.1/24"), "{diff}");
    assert!(diff.contains("table ip nbtest"), "{diff}");

    f.pod
        .sh("ip link del nbx0 && nft delete table ip nbtest")
        .unwrap();
    assert_eq!(before.diff(&f.pod.snapshot().unwrap()), None);
}
