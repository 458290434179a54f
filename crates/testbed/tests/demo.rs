//! `examples/demo.sh` end to end, as a newcomer runs it (README): real CNI plugins, `netbind
//! up` for a masquerade and a bridged interface, a QEMU guest on `--domain-out`, leases,
//! ping and HTTP both ways, `netbind down`. Needs root and what scripts/install-deps.sh
//! installs; fails, never skips, when it cannot run. The script gets this build's
//! binaries (`netbind` of netbind-cli, built by `cargo test --workspace`, and
//! `netbind-guest-image`), so it does not run cargo itself. Bounded: after 150 s the
//! script gets SIGTERM (its trap cleans up) and the test fails.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn netbind_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NETBIND_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/demo-<hash> → target/<profile>/netbind
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join("netbind");
    assert!(
        p.is_file(),
        "{} is missing: build it first (`cargo build -p netbind-cli`; `cargo test --workspace` does) or set NETBIND_BIN",
        p.display()
    );
    p
}

#[test]
fn the_demo_runs_end_to_end() {
    netbind_testbed::require_privileges(&[
        "ip",
        "nft",
        "qemu-system-x86_64",
        "busybox",
        "python3",
        "curl",
        "setpriv",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
    ])
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.sh");
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(&script)
        .env("NETBIND_BIN", netbind_bin())
        .env(
            "NETBIND_GUEST_IMAGE",
            env!("CARGO_BIN_EXE_netbind-guest-image"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start examples/demo.sh");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let limit = Duration::from_secs(150);
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if !timed_out && started.elapsed() > limit {
            // The script's own process group: its trap stops QEMU, runs `netbind down`,
            // CNI DEL and deletes the namespaces.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            timed_out = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let took = started.elapsed();
    println!("{stdout}\n{stderr}\nexamples/demo.sh took {took:.1?}");
    assert!(
        !timed_out,
        "examples/demo.sh took longer than {limit:?}:\n{stdout}\n{stderr}"
    );
    assert!(
        status.success(),
        "examples/demo.sh failed ({status}):\n{stdout}\n{stderr}"
    );
    for want in [
        " lease on eth0: 10.0.2.2/24 router=10.0.2.1",
        " lease on eth1: 10.88.1.2/24",
        "guest: HTTP GET http://10.88.0.3:8080/ -> HTTP/1.0 200 OK \"hello from a peer\"",
        "guest: HTTP GET http://10.88.1.3:8080/ -> HTTP/1.0 200 OK \"hello from a peer\"",
        "peer: 10.88.0.2 - - ",
        "blue: 10.88.1.2 - - ",
        "peer: curl http://10.88.0.2/ -> hello from the guest",
        "blue: curl http://10.88.1.2/ -> hello from the guest",
        "blue: ping 10.88.1.2: 2 packets received",
        "netbind down: VirtualMachineInstance/default/demo in ",
        "demo: done in ",
    ] {
        assert!(
            stdout.contains(want) || stderr.contains(want),
            "the demo's output lacks {want:?}:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        !stdout.contains("panicked") && !stderr.contains("panicked"),
        "a panic in the demo:\n{stdout}\n{stderr}"
    );
    let left = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter(|l| l.starts_with(&format!("nbdemo-{}-", child.id())))
    .count();
    assert_eq!(left, 0, "the demo left namespaces behind");
}
