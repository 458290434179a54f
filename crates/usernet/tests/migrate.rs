//! Live migration over vhost-user (privileged; fails, never skips, without QEMU, the
//! guest kernel, busybox or python3): two QEMU 10 processes, TCG, shared memfd memory,
//! the source migrating to the target (`-incoming`) over a unix socket through QMP; one
//! engine each, both in the pod's namespace (the pod's IP stays).
//!
//! The guest keeps opening connections to a peer the whole time, printing each answer
//! with a running count; the source's console has the first ones, the target's the
//! rest. After the switch the target's engine serves the migrated queues: the count
//! goes on with the pod's address as the source the peer saw.

mod common;

use std::time::{Duration, Instant};

use common::pod::{Nic, Running, engine_config};
use netbind_testbed::agent::SourceAgent;
use netbind_testbed::qmp::Qmp;
use netbind_testbed::{Guest, GuestNic, GuestOptions, PodFixture, require_privileges};

const MAC: &str = "02:00:00:75:e1:02";
const AGENT_TCP: u16 = 7000;
const AGENT_UDP: u16 = 7001;

const SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
. /run/dhcp-$IF.env
i=0
while [ $i -lt 2000 ]; do
  echo "TICK $i $ip $(echo hi | timeout 3 nc -w 2 @PEER4@ @TCP@)"
  i=$((i + 1))
  usleep 200000
done
"#;

/// The `TICK n ADDRESS src=…` lines of a console whose connection got its answer.
fn ticks(console: &str, want: &str) -> Vec<u32> {
    console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TICK "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, rest)| *rest == want)
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_guest_migrated_to_another_engine_goes_on_reaching_its_peer() {
    require_privileges(&["ip", "qemu-system-x86_64", "busybox", "python3"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let (pod4, peer4) = (pod.pod_ip(false).unwrap(), pod.peer_ip(false).unwrap());
    let _agent = SourceAgent::start(&pod.peer, AGENT_TCP, AGENT_UDP).expect("peer agent");
    let dir = tempfile::Builder::new()
        .prefix("nbu-mig-")
        .tempdir()
        .unwrap();
    let (src_dir, dst_dir) = (dir.path().join("source"), dir.path().join("target"));
    std::fs::create_dir_all(&src_dir).unwrap();
    std::fs::create_dir_all(&dst_dir).unwrap();
    let (src_sock, dst_sock) = (src_dir.join("vu.sock"), dst_dir.join("vu.sock"));
    let source_engine = Running::start(
        &pod,
        engine_config(&pod, &[]),
        Nic::VhostUser,
        &src_sock,
        &src_dir,
    );
    let target_engine = Running::start(
        &pod,
        engine_config(&pod, &[]),
        Nic::VhostUser,
        &dst_sock,
        &dst_dir,
    );
    let script = SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@TCP@", &AGENT_TCP.to_string());
    let (src_qmp, dst_qmp, channel) = (
        dir.path().join("source.qmp"),
        dir.path().join("target.qmp"),
        dir.path().join("migration.sock"),
    );
    let qmp_arg = |p: &std::path::Path| format!("unix:{},server=on,wait=off", p.display());
    let source_opts = GuestOptions {
        extra_args: vec!["-qmp".into(), qmp_arg(&src_qmp)],
        ..GuestOptions::default()
    };
    let target_opts = GuestOptions {
        extra_args: vec![
            "-qmp".into(),
            qmp_arg(&dst_qmp),
            "-incoming".into(),
            format!("unix:{}", channel.display()),
        ],
        ..GuestOptions::default()
    };
    let source = Guest::boot_with(
        &pod.pod,
        &[GuestNic::vhost_user(&src_sock, MAC)],
        &script,
        &source_opts,
    )
    .expect("source guest boots");
    let answered = format!("{pod4} src={pod4}");
    wait_until(
        "the guest reaches its peer from the source",
        Duration::from_secs(150),
        || ticks(&source.console(), &answered).len() >= 3,
    );
    let target = Guest::boot_with(
        &pod.pod,
        &[GuestNic::vhost_user(&dst_sock, MAC)],
        &script,
        &target_opts,
    )
    .expect("target QEMU starts");
    let mut qmp = Qmp::connect(&src_qmp, Duration::from_secs(10)).expect("source QMP");
    let mut target_qmp = Qmp::connect(&dst_qmp, Duration::from_secs(10)).expect("target QMP");
    let started = Instant::now();
    qmp.execute(
        "migrate",
        serde_json::json!({ "uri": format!("unix:{}", channel.display()) }),
    )
    .expect("migrate");
    let mut status = serde_json::Value::Null;
    wait_until("the migration completes", Duration::from_secs(120), || {
        status = qmp
            .execute("query-migrate", serde_json::json!({}))
            .expect("query-migrate");
        assert_ne!(
            status["status"],
            "failed",
            "{status}\n{}",
            source.qemu_stderr()
        );
        status["status"] == "completed"
    });
    eprintln!(
        "migrated in {:?}: downtime {} ms, total {} ms",
        started.elapsed(),
        status["downtime"],
        status["total-time"]
    );
    let running = target_qmp
        .execute("query-status", serde_json::json!({}))
        .expect("query-status");
    assert_eq!(running["status"], "running", "{running}");
    let last_on_source = ticks(&source.console(), &answered).into_iter().max();
    drop(source); // the source QEMU stays paused after a migration: end it
    wait_until(
        "the guest reaches its peer from the target, five times",
        Duration::from_secs(60),
        || ticks(&target.console(), &answered).len() >= 5,
    );
    let console = target.console();
    let first_on_target = ticks(&console, &answered).into_iter().min();
    assert!(
        first_on_target > last_on_source,
        "the count went on: {last_on_source:?} then {first_on_target:?}\n{console}"
    );
    drop(target);
    let src = source_engine.stop(&src_dir);
    let dst = target_engine.stop(&dst_dir);
    assert!(dst["vu_frames_from_guest"] > 0, "{dst:?}");
    assert_eq!(dst["vu_queue_errors"], 0, "{dst:?}");
    assert_eq!(src["vu_queue_errors"], 0, "{src:?}");
}
