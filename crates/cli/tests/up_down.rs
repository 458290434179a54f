//! Privileged end to end: `netbind up` / `netbind down` as processes, against pods wired
//! by the real CNI `bridge` plugin — idempotency, SIGKILL after every step, `down` after
//! every partial `up`, `--domain-out`, and DHCP served to a busybox `udhcpc` client.
//! Needs root, containernetworking-plugins, nftables and busybox; fails (never skips).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use netbind_testbed::{Netns, PodFixture, Secondary, Snapshot};

/// Not the usual 1500, so that a test sees where an MTU comes from.
const MTU: u32 = 1400;

const MASQUERADE_AND_BLUE: &str = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}, {name: blue, bridge: {}}]}}
  networks: [{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]
";

const BRIDGE: &str = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, bridge: {}, macAddress: '02:00:00:aa:bb:cc'}]}}
  networks: [{name: default, pod: {}}]
";

struct Setup {
    pod: PodFixture,
    dir: tempfile::TempDir,
    manifest: String,
    state: String,
}

fn setup(manifest: &str, blue: bool) -> Setup {
    let mut builder = PodFixture::builder()
        .mtu(MTU)
        .resolv_conf("nameserver 10.96.0.10\n");
    if blue {
        // Plain L2, as the `bridge` plugin without IPAM leaves it.
        builder = builder.secondary(
            Secondary::bridge("blue")
                .without_ipam()
                .without_peer()
                .mtu(MTU),
        );
    }
    let pod = builder.build().expect("CNI pod");
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(dir.path(), "vm.yaml", manifest);
    let state = dir.path().join("state").display().to_string();
    Setup {
        pod,
        dir,
        manifest,
        state,
    }
}

impl Setup {
    /// `netbind up MANIFEST --netns POD --state-dir STATE`, for more arguments.
    fn up_command(&self) -> Command {
        let mut cmd = Command::new(NETBIND);
        cmd.args([
            "up",
            &self.manifest,
            "--netns",
            self.pod.pod.name(),
            "--state-dir",
            &self.state,
        ]);
        cmd
    }

    fn up(&self, env: &[(&str, String)]) -> Output {
        let mut cmd = self.up_command();
        cmd.arg("--no-serve");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run netbind up")
    }

    fn down(&self) -> Output {
        Command::new(NETBIND)
            .args([
                "down",
                &self.manifest,
                "--netns",
                self.pod.pod.name(),
                "--state-dir",
                &self.state,
            ])
            .output()
            .expect("run netbind down")
    }

    /// `netbind status` of this VM, with `--output OUTPUT`.
    fn status(&self, output: &str) -> Output {
        Command::new(NETBIND)
            .args([
                "status",
                &self.manifest,
                "--state-dir",
                &self.state,
                "--output",
                output,
            ])
            .output()
            .expect("run netbind status")
    }

    fn snapshot(&self) -> Snapshot {
        self.pod.pod.snapshot().expect("snapshot the pod namespace")
    }

    /// `killed` died by SIGKILL; `up` run again exits 0 and leaves the namespace as `want`
    /// (see [`Setup::snapshot_of_up`]). Returns what that `up` said.
    fn converges_after(&self, killed: &Output, want: &Snapshot, when: &str) -> String {
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{when}: {}",
            stderr(killed)
        );
        let again = self.up(&[]);
        assert_eq!(code(&again), 0, "{when}: {}", stderr(&again));
        assert_eq!(
            netbind_testbed::settles(want, || self.snapshot_of_up()),
            *want,
            "{when}, then up"
        );
        stderr(&again)
    }

    /// `killed` died by SIGKILL; `down` exits 0 and leaves the namespace as `cni`.
    fn down_restores_after(&self, killed: &Output, cni: &Snapshot, when: &str) {
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{when}: {}",
            stderr(killed)
        );
        let down = self.down();
        assert_eq!(code(&down), 0, "{when}: {}", stderr(&down));
        assert_eq!(
            netbind_testbed::settles(cni, || self.snapshot()),
            *cni,
            "down after {when}"
        );
    }

    /// The snapshot with tap MACs masked: the kernel picks a tap's MAC at random and the
    /// plan does not name one, so two `up`s differ there and nowhere else.
    fn snapshot_of_up(&self) -> Snapshot {
        self.snapshot().with_tap_macs_masked()
    }
}

fn steps_of(out: &Output) -> usize {
    let text = stderr(out);
    let at = text
        .find(" steps,")
        .unwrap_or_else(|| panic!("no step count in: {text}"));
    text[..at]
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step count in: {text}"))
}

#[test]
fn up_twice_is_a_no_op_and_down_restores_the_cni_namespace() {
    let s = setup(MASQUERADE_AND_BLUE, true);
    let cni = s.snapshot();
    let domain = s.dir.path().join("domain.json");
    let first = s
        .up_command()
        .arg("--no-serve")
        .args(["--domain-out", &domain.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let built = s.snapshot_of_up();
    let second = s.up(&[]);
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert!(
        stderr(&second).contains(" 0 changed"),
        "{}",
        stderr(&second)
    );
    assert_eq!(s.snapshot_of_up(), built);

    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&domain).unwrap()).unwrap();
    assert_eq!(doc["object"], "VirtualMachineInstance/ns/vm");
    let per_interface: Vec<(&str, &str, &str)> = doc["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap();
            (s("name"), s("alias"), s("linkState"))
        })
        .collect();
    assert_eq!(
        per_interface,
        [("default", "ua-default", "up"), ("blue", "ua-blue", "up")]
    );
    let args: Vec<&str> = doc["qemuArgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.iter().any(|a| a.contains("ifname=tap0")), "{args:?}");
    assert!(
        doc["libvirtXml"]
            .as_str()
            .unwrap()
            .contains("<target dev='tap0'"),
        "{doc}"
    );

    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    assert_eq!(netbind_testbed::settles(&cni, || s.snapshot()), cni);
    assert!(
        !std::path::Path::new(&s.state).exists(),
        "down removes the state dir"
    );
    let again = s.down();
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(stderr(&again).contains("nothing to undo"));
}

#[test]
fn up_killed_after_any_step_converges_and_down_after_it_restores_cni() {
    killed_after_every_step(MASQUERADE_AND_BLUE, true);
}

#[test]
fn bridge_on_the_pod_network_survives_a_kill_after_any_step() {
    killed_after_every_step(BRIDGE, false);
}

fn killed_after_every_step(manifest: &str, blue: bool) {
    let s = setup(manifest, blue);
    let cni = s.snapshot();
    let clean = s.up(&[]);
    assert_eq!(code(&clean), 0, "{}", stderr(&clean));
    let total = steps_of(&clean);
    let built = s.snapshot_of_up();
    assert_eq!(code(&s.down()), 0);
    assert_eq!(netbind_testbed::settles(&cni, || s.snapshot()), cni);

    for n in 1..=total {
        let kill = [("NETBIND_KILL_AFTER_STEP", n.to_string())];
        // Killed, then run again: the same namespace as a clean `up`.
        s.converges_after(&s.up(&kill), &built, &format!("up killed after step {n}"));
        assert_eq!(code(&s.down()), 0);
        assert_eq!(
            netbind_testbed::settles(&cni, || s.snapshot()),
            cni,
            "down after a full up (step {n} round)"
        );

        // Killed, then `down`: the namespace CNI made.
        s.down_restores_after(&s.up(&kill), &cni, &format!("up killed after step {n}"));
    }
}

#[test]
fn a_failing_step_exits_3_naming_the_step_and_rolls_back() {
    let s = setup(MASQUERADE_AND_BLUE, true);
    let cni = s.snapshot();
    let out = s.up(&[("NETBIND_FAIL_AFTER_STEP", "7".into())]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let text = stderr(&out);
    // Steps 1–7 (the masquerade interface's bridge, addresses and tap) all change
    // something in a fresh pod: the failure injected after step 7 undoes seven changes.
    assert!(text.contains("step 7/"), "{text}");
    assert!(
        text.contains("rolled back the 7 change(s) of this run"),
        "{text}"
    );
    assert_eq!(netbind_testbed::settles(&cni, || s.snapshot()), cni);
}

/// Kills the child when dropped, so a failing assertion never leaves `up` running.
struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_bridged_guest_gets_the_pod_address_router_and_mtu_by_dhcp() {
    netbind_testbed::require_privileges(&["busybox"]).unwrap_or_else(|e| panic!("{e}"));
    let s = setup(BRIDGE, false);
    let cni = s.snapshot();
    let v4 = s
        .pod
        .result()
        .sandbox_ips()
        .into_iter()
        .find(|ip| ip.address.addr().is_ipv4())
        .expect("an IPv4 address");
    let (address, gateway) = (v4.address, v4.gateway.expect("gateway"));

    let (mut up, _, rx) = up_until(s.up_command(), "it serves", |l| {
        l.contains("serving dhcp4 on k6t-eth0")
    });

    let (_guest, lease) = udhcpc_lease(&s);
    assert!(
        lease.contains(&format!("ip={} ", address.addr())),
        "{lease}"
    );
    assert_eq!(address.prefix_len(), 24);
    assert!(lease.contains("subnet=255.255.255.0"), "{lease}");
    assert!(lease.contains(&format!("router={gateway}")), "{lease}");
    assert!(lease.contains(&format!("mtu={MTU}")), "{lease}");
    assert!(lease.contains("dns=10.96.0.10"), "{lease}");

    // SIGTERM: counters, exit 0.
    nix_kill(up.0.id());
    let status = up.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        rest.push(line);
    }
    assert!(
        rest.iter()
            .any(|l| l.starts_with("netbind up: dhcp4 on k6t-eth0: received")),
        "{rest:?}"
    );

    s.pod
        .pod
        .exec(&["ip", "link", "del", "gst0"])
        .expect("delete gst0");
    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    assert_eq!(netbind_testbed::settles(&cni, || s.snapshot()), cni);
}

/// The lines `up` printed until it exited (after a SIGTERM it was sent by the caller).
fn rest_of(rx: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        rest.push(line);
    }
    rest
}

#[test]
fn with_log_format_json_every_line_is_an_event_and_the_lease_given_is_one() {
    netbind_testbed::require_privileges(&["busybox"]).unwrap_or_else(|e| panic!("{e}"));
    let s = setup(BRIDGE, false);
    let event = |l: &str| serde_json::from_str::<serde_json::Value>(l).ok();
    let mut cmd = s.up_command();
    cmd.args(["--log-format", "json"]);
    let (mut up, mut lines, rx) = up_until(cmd, "it serves", |l| {
        event(l).is_some_and(|e| e["message"].as_str().unwrap_or("").starts_with("serving "))
    });
    let (_guest, lease) = udhcpc_lease(&s);
    nix_kill(up.0.id());
    assert_eq!(up.0.wait().unwrap().code(), Some(0));
    lines.extend(rest_of(&rx));

    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| event(l).unwrap_or_else(|| panic!("not a JSON event: {l:?} in {lines:#?}")))
        .collect();
    for e in &events {
        assert!(
            e["timestamp"].is_string() && e["message"].is_string(),
            "{e}"
        );
        assert_eq!(e["level"], "INFO", "the default level: {e}");
    }
    let ip = lease
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("ip="))
        .expect("the lease's address");
    let given = events
        .iter()
        .find(|e| e["message"].as_str().unwrap().contains("lease of"))
        .unwrap_or_else(|| panic!("no lease event: {events:#?}"));
    assert_eq!(given["service"], "dhcp4 on k6t-eth0", "{given}");
    assert_eq!(given["address"], format!("{ip}/24"), "{given}");
    assert_eq!(given["mac"], "02:00:00:aa:bb:cc", "{given}");
    let totals = events
        .iter()
        .find(|e| e["message"].as_str().unwrap().contains(": received "))
        .unwrap_or_else(|| panic!("no counters: {events:#?}"));
    assert!(
        totals["answered"].as_u64() >= Some(2),
        "offer and ack: {totals}"
    );

    s.pod
        .pod
        .exec(&["ip", "link", "del", "gst0"])
        .expect("delete gst0");
    assert_eq!(code(&s.down()), 0);
}

#[test]
fn verbose_up_logs_each_dhcp_message_it_sends_at_debug_level() {
    netbind_testbed::require_privileges(&["busybox"]).unwrap_or_else(|e| panic!("{e}"));
    let s = setup(BRIDGE, false);
    let mut cmd = s.up_command();
    cmd.arg("-v");
    let (mut up, mut lines, rx) = up_until(cmd, "it serves", |l| l.contains("serving dhcp4"));
    let _guest = udhcpc_lease(&s);
    nix_kill(up.0.id());
    assert_eq!(up.0.wait().unwrap().code(), Some(0));
    lines.extend(rest_of(&rx));
    assert!(
        lines
            .iter()
            .any(|l| l == "netbind up: debug: dhcp4 on k6t-eth0: Offer sent"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("netbind up: dhcp4 on k6t-eth0: lease of ")),
        "info events stay: {lines:#?}"
    );

    s.pod
        .pod
        .exec(&["ip", "link", "del", "gst0"])
        .expect("delete gst0");
    assert_eq!(code(&s.down()), 0);
}

#[test]
fn quiet_up_says_nothing_when_all_goes_well() {
    let s = setup(MASQUERADE_AND_BLUE, true);
    let quiet = s.up_command().args(["--no-serve", "-q"]).output().unwrap();
    assert_eq!(code(&quiet), 0, "{}", stderr(&quiet));
    assert_eq!(stderr(&quiet), "");
    let down = Command::new(NETBIND)
        .args([
            "down",
            &s.manifest,
            "--netns",
            s.pod.pod.name(),
            "--state-dir",
            &s.state,
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    assert_eq!(stderr(&down), "");
}

/// A guest for the bridge binding: a veth on the pod's bridge (in place of the tap) with
/// the VM's MAC, in a namespace of its own, where busybox `udhcpc` asks for a lease.
/// Returns the namespace and the lease as `ip=… subnet=… router=… mtu=… dns=…`.
fn udhcpc_lease(s: &Setup) -> (Netns, String) {
    let guest = Netns::new("guest").expect("guest namespace");
    let pod_ns = &s.pod.pod;
    pod_ns
        .exec(&[
            "ip",
            "link",
            "add",
            "gst0",
            "type",
            "veth",
            "peer",
            "name",
            "gst1",
            "netns",
            guest.name(),
        ])
        .expect("veth into the guest namespace");
    pod_ns
        .exec(&["ip", "link", "set", "gst0", "master", "k6t-eth0", "up"])
        .expect("gst0 on the pod bridge");
    guest
        .exec(&[
            "ip",
            "link",
            "set",
            "gst1",
            "address",
            "02:00:00:aa:bb:cc",
            "up",
        ])
        .expect("gst1 with the VM's MAC");
    let script = s.dir.path().join("udhcpc.sh");
    let result = s.dir.path().join("lease.env");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"ip=$ip subnet=$subnet router=$router mtu=$mtu dns=$dns\" > {}\nexit 0\n",
            result.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .args(["+x", &script.display().to_string()])
        .status()
        .unwrap();
    let dhcp = guest
        .try_exec(&[
            "busybox",
            "udhcpc",
            "-i",
            "gst1",
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            &script.display().to_string(),
        ])
        .unwrap();
    let lease = std::fs::read_to_string(&result).unwrap_or_else(|_| {
        panic!(
            "no lease: {}{}",
            String::from_utf8_lossy(&dhcp.stdout),
            String::from_utf8_lossy(&dhcp.stderr)
        )
    });
    (guest, lease)
}

fn nix_kill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
}

#[test]
fn a_passt_binding_interface_gets_its_own_engine_which_stops_with_up() {
    let vm = format!("passt{}", std::process::id());
    let manifest = format!(
        "kind: VirtualMachineInstance\nmetadata: {{name: {vm}, namespace: ns}}\nspec:\n  domain: {{devices: {{interfaces: [{{name: default, passtBinding: {{}}, ports: [{{port: 8080}}]}}]}}}}\n  networks: [{{name: default, pod: {{}}}}]\n"
    );
    let s = setup(&manifest, false);
    let domain = s.dir.path().join("domain.json");
    let mut cmd = s.up_command();
    cmd.arg("--domain-out").arg(&domain);
    let engine = |l: &str| {
        l.strip_prefix("netbind up: user-mode engine for default: pid ")
            .and_then(|p| p.trim().parse::<u32>().ok())
    };
    let (mut up, seen, _) = up_until(cmd, "it started an engine", |l| engine(l).is_some());
    let engine_pid = seen.last().and_then(|l| engine(l)).unwrap();

    // The engine lives in the pod's namespace and listens where QEMU is told to connect.
    let own_ns = std::fs::read_link(format!("/proc/{engine_pid}/ns/net")).unwrap();
    let pod_ns = std::fs::metadata(s.pod.pod.path()).unwrap();
    assert!(
        own_ns
            .display()
            .to_string()
            .contains(&std::os::unix::fs::MetadataExt::ino(&pod_ns).to_string()),
        "engine runs in {own_ns:?}, not the pod's namespace"
    );
    // --domain-out appears only once the guest can start: the engine already listens.
    let text = (0..400)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_to_string(&domain).ok()
        })
        .expect("up wrote no --domain-out");
    let args: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(args["launcher"], "qemu", "{args}");
    let socket = args["qemuArgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("socket,")?.split("path=").nth(1))
        .map(|p| p.split(',').next().unwrap().to_string())
        .next()
        .expect("a -chardev socket argument with path=");
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "nothing listens on {socket} although --domain-out was written"
    );
    // The plan's attachment is vhost-user unless the VM asks for a stream socket. (Read
    // once the engine listens: right after its spawn, its exec may still be under way.)
    let argv = std::fs::read(format!("/proc/{engine_pid}/cmdline")).unwrap();
    assert!(
        argv.split(|b| *b == 0).any(|a| a == b"--vhost-user"),
        "{}",
        String::from_utf8_lossy(&argv)
    );

    // `status` shows the engine's counters, which it keeps in the state dir (written
    // first right before its loop starts).
    let status_json =
        || serde_json::from_slice::<serde_json::Value>(&s.status("json").stdout).unwrap();
    let doc = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            status_json()
        })
        .find(|d| d["interfaces"][0]["engine"].is_object())
        .expect("status never showed the engine's counters");
    let engine = &doc["interfaces"][0]["engine"];
    assert_eq!(engine["flowsCap"], 65536, "{doc}");
    assert_eq!(engine["flowsNow"], 0, "{doc}");
    let table = s.status("table");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("  user-mode engine: flows 0/65536; guest frames in 0"),
        "{table}"
    );

    nix_kill(up.0.id());
    assert_eq!(up.0.wait().unwrap().code(), Some(0));
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        !std::path::Path::new(&format!("/proc/{engine_pid}")).exists()
    });
    assert!(gone, "the engine outlived `up`");
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the engine's socket {socket} outlived `up`"
    );
    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    let left: Vec<_> = std::fs::read_dir(&s.state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "down left {left:?} in the state dir");
    let _ = std::fs::remove_dir_all(std::path::Path::new(&socket).parent().unwrap());
}

const MASQUERADE_ONLY: &str = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}]}}
  networks: [{name: default, pod: {}}]
";

/// `MASQUERADE_AND_BLUE` with `blue` as KubeVirt marks a hot-unplug.
const BLUE_ABSENT: &str = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}, {name: blue, bridge: {}, state: absent}]}}
  networks: [{name: default, pod: {}}, {name: blue, multus: {networkName: blue}}]
";

/// `ip -o link show LINK` in the pod: index, name, flags, MTU, master, state, MAC. A link
/// that was deleted and made again reads differently (its index).
/// The processes in the pod's namespace running netbind as a user-mode engine.
fn engines_in(s: &Setup) -> Vec<String> {
    s.pod
        .pod
        .pids()
        .into_iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(" usernet "))
        .collect()
}

/// With libvirt starting the guest, libvirt runs the passt of a vhost-user NIC (netbind
/// as passt, from the interface's `<backend type='passt'/>`): `up` sets the pod up for it
/// (the sysctls passt needs) and runs no engine of its own, whose ports would collide
/// with passt's. A stream socket's engine it still runs: libvirt only passes QEMU the
/// arguments that connect to it.
#[test]
fn with_libvirt_launching_up_leaves_a_vhost_user_nic_to_libvirts_passt() {
    let vm = format!("lvpasst{}", std::process::id());
    let manifest = |annotations: &str| {
        format!(
            "kind: VirtualMachineInstance\nmetadata: {{name: {vm}, namespace: ns{annotations}}}\nspec:\n  domain: {{devices: {{interfaces: [{{name: default, passtBinding: {{}}, ports: [{{port: 8080}}]}}]}}}}\n  networks: [{{name: default, pod: {{}}}}]\n"
        )
    };
    let s = setup(&manifest(""), false);
    let domain = s.dir.path().join("domain.json");
    let mut cmd = s.up_command();
    cmd.args(["--launcher", "libvirt", "--log-format", "text"])
        .arg("--domain-out")
        .arg(&domain);
    let (mut up, seen, _) = up_until(cmd, "what it serves", |l| {
        l.contains("serving ") || l.contains("nothing to serve")
    });
    let said = seen.join("\n");
    assert!(
        said.contains(
            "default: vhost-user served by the passt libvirt starts (netbind as passt); no engine here"
        ),
        "{said}"
    );
    assert!(!said.contains("user-mode engine for"), "{said}");
    assert_eq!(engines_in(&s), Vec::<String>::new());
    let out: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&domain).unwrap()).unwrap();
    assert_eq!(out["launcher"], "libvirt", "{out}");
    let xml = out["libvirtXml"].as_str().unwrap();
    assert!(
        xml.starts_with("<interface type='vhostuser'>")
            && xml.contains("<backend type='passt' logFile='/var/run/kubevirt/passt.log'/>")
            && xml.contains("<range start='8080'/>"),
        "{xml}"
    );
    assert!(
        out["libvirtDomainXml"]
            .as_str()
            .unwrap()
            .contains("<access mode='shared'/>"),
        "{out}"
    );
    // What libvirt's passt (the qemu user) needs of the pod: pings by ping sockets,
    // listening on low ports.
    assert_eq!(
        s.pod
            .pod
            .sh("cat /proc/sys/net/ipv4/ping_group_range /proc/sys/net/ipv4/ip_unprivileged_port_start")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["107", "107", "0"]
    );
    nix_kill(up.0.id());
    assert_eq!(up.0.wait().unwrap().code(), Some(0));
    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));

    // The same VM on a stream socket: libvirt gets `<qemu:commandline>`, `up` the engine.
    let stream = manifest(", annotations: {netbind.io/usernet-attachment: stream}");
    std::fs::write(&s.manifest, stream).unwrap();
    let mut cmd = s.up_command();
    cmd.args(["--launcher", "libvirt", "--log-format", "text"]);
    // Once it serves, its engine listens (and so has long been exec'd).
    let (mut up, seen, _) = up_until(cmd, "what it serves", |l| {
        l.contains("serving ") || l.contains("nothing to serve")
    });
    assert!(
        seen.iter()
            .any(|l| l.starts_with("netbind up: user-mode engine for default: pid ")),
        "{seen:?}"
    );
    let engines = engines_in(&s);
    assert_eq!(engines.len(), 1, "{seen:?} {engines:?}");
    assert!(!engines[0].contains("--vhost-user"), "{engines:?}");
    nix_kill(up.0.id());
    assert_eq!(up.0.wait().unwrap().code(), Some(0));
    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
}

fn link_line(s: &Setup, link: &str) -> String {
    s.pod
        .pod
        .sh(&format!("ip -o link show {link}"))
        .expect("ip link show")
}

#[test]
fn a_hot_plugged_network_is_built_and_unplugged_without_touching_the_others() {
    let mut s = setup(MASQUERADE_ONLY, false);
    let cni_links = s.pod.pod.links().unwrap();
    let cni_rules = s.pod.pod.sh("nft -s list ruleset").unwrap();
    let first = s.up(&[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let (bridge, tap) = (link_line(&s, "k6t-eth0"), link_line(&s, "tap0"));
    let rules = s.pod.pod.sh("nft -s list ruleset").unwrap();

    // Multus adds the network to the running pod; the VM spec gains the interface.
    s.pod
        .add_secondary(
            Secondary::bridge("blue")
                .without_ipam()
                .without_peer()
                .mtu(MTU),
        )
        .expect("hot-plug the blue network");
    let blue = netbind_spec::naming::secondary_pod_link("blue");
    let blue_as_cni_made_it = link_line(&s, &blue);
    let links_before = s.pod.pod.links().unwrap();
    write(s.dir.path(), "vm.yaml", MASQUERADE_AND_BLUE);
    let plug = s.up(&[]);
    assert_eq!(code(&plug), 0, "{}", stderr(&plug));
    assert!(
        stderr(&plug).contains("the plan changed: plugged blue\n"),
        "{}",
        stderr(&plug)
    );
    // The log names each step the hot-plug took, all of them blue's.
    let steps: Vec<String> = (stderr(&plug).lines())
        .filter(|l| l.starts_with("netbind up: step "))
        .map(str::to_string)
        .collect();
    assert!(
        !steps.is_empty() && steps.iter().all(|l| l.contains(" (blue): ")),
        "{}",
        stderr(&plug)
    );
    let links = s.pod.pod.links().unwrap();
    for made in [
        netbind_spec::naming::bridge_name(&blue),
        netbind_spec::naming::tap_name(&blue),
        netbind_spec::naming::renamed_pod_link(&blue),
    ] {
        assert!(links.contains(&made), "no {made} in {links:?}");
    }
    assert_eq!(
        link_line(&s, "k6t-eth0"),
        bridge,
        "the masquerade bridge was touched"
    );
    assert_eq!(link_line(&s, "tap0"), tap, "the masquerade tap was touched");
    assert_eq!(s.pod.pod.sh("nft -s list ruleset").unwrap(), rules);
    let again = s.up(&[]);
    assert!(stderr(&again).contains(" 0 changed"), "{}", stderr(&again));

    // Hot-unplug: blue's link goes back as CNI made it; the rest stays as it was.
    write(s.dir.path(), "vm.yaml", BLUE_ABSENT);
    let unplug = s.up(&[]);
    assert_eq!(code(&unplug), 0, "{}", stderr(&unplug));
    assert!(
        stderr(&unplug).contains("the plan changed: unplugged blue\n"),
        "{}",
        stderr(&unplug)
    );
    let undone = (stderr(&unplug).lines())
        .filter(|l| l.starts_with("netbind up: undid step ") && l.contains(" (blue): "))
        .count();
    assert_eq!(
        undone,
        steps.len(),
        "each of blue's steps undone: {}",
        stderr(&unplug)
    );
    assert_eq!(s.pod.pod.links().unwrap(), links_before);
    assert_eq!(link_line(&s, &blue), blue_as_cni_made_it);
    assert_eq!(link_line(&s, "k6t-eth0"), bridge);
    assert_eq!(link_line(&s, "tap0"), tap);

    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    let mut expected = cni_links;
    expected.insert(blue.clone());
    assert_eq!(s.pod.pod.links().unwrap(), expected);
    assert_eq!(link_line(&s, &blue), blue_as_cni_made_it);
    assert_eq!(s.pod.pod.sh("nft -s list ruleset").unwrap(), cni_rules);
}

/// Starts `cmd` (an `up`) with its stderr piped and reads what it says until a line for
/// which `done` holds (`waiting_for` names it in the failure); returns the process, the
/// lines so far, and the lines still to come.
fn up_until(
    mut cmd: Command,
    waiting_for: &str,
    done: impl Fn(&str) -> bool,
) -> (Running, Vec<String>, std::sync::mpsc::Receiver<String>) {
    let mut up = Running(cmd.stderr(Stdio::piped()).spawn().unwrap());
    let lines = BufReader::new(up.0.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.last().is_some_and(|l: &String| done(l)) {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("up never said {waiting_for}: {seen:?}"));
        seen.push(line);
    }
    (up, seen, rx)
}

/// Starts a serving `up` and returns it with what it said up to the line naming what it
/// serves.
fn serving_up(s: &Setup) -> (Running, String) {
    let (up, seen, _) = up_until(s.up_command(), "what it serves", |l| {
        l.contains("serving ") || l.contains("nothing to serve")
    });
    (up, seen.join("\n"))
}

#[test]
fn after_a_hot_plug_the_new_up_serves_only_what_it_plugged() {
    let mut s = setup(MASQUERADE_ONLY, false);
    let (_first, said) = serving_up(&s);
    assert!(said.contains("dhcp4 on k6t-eth0"), "{said}");

    s.pod
        .add_secondary(Secondary::bridge("blue").without_peer().mtu(MTU))
        .expect("hot-plug the blue network");
    write(s.dir.path(), "vm.yaml", MASQUERADE_AND_BLUE);
    let (_second, said) = serving_up(&s);
    let blue_bridge =
        netbind_spec::naming::bridge_name(&netbind_spec::naming::secondary_pod_link("blue"));
    assert!(
        said.contains("default served by an earlier `netbind up`"),
        "{said}"
    );
    assert!(said.contains(&format!("dhcp4 on {blue_bridge}")), "{said}");
    assert!(!said.contains("dhcp4 on k6t-eth0"), "{said}");

    // Unplugged and plugged again while both still run: the second `up` serves a bridge
    // that is gone, so the next serving `up` takes blue.
    write(s.dir.path(), "vm.yaml", BLUE_ABSENT);
    assert_eq!(code(&s.up(&[])), 0);
    write(s.dir.path(), "vm.yaml", MASQUERADE_AND_BLUE);
    let (_third, said) = serving_up(&s);
    assert!(said.contains(&format!("dhcp4 on {blue_bridge}")), "{said}");
    assert!(!said.contains("dhcp4 on k6t-eth0"), "{said}");
}

#[test]
fn a_hot_unplug_killed_after_any_undo_converges_when_run_again() {
    let s = setup(MASQUERADE_AND_BLUE, true);
    let cni = s.snapshot();
    let manifest = |text: &str| write(s.dir.path(), "vm.yaml", text);
    // What an unplug must end at: the masquerade interface alone, blue as CNI made it.
    manifest(BLUE_ABSENT);
    let alone = s.up(&[]);
    assert_eq!(code(&alone), 0, "{}", stderr(&alone));
    let unplugged = s.snapshot_of_up();
    assert_eq!(code(&s.down()), 0);

    for n in 1.. {
        manifest(MASQUERADE_AND_BLUE);
        let both = s.up(&[]);
        assert_eq!(code(&both), 0, "{}", stderr(&both));
        manifest(BLUE_ABSENT);
        let killed = s.up(&[("NETBIND_KILL_AFTER_UNPLUG", n.to_string())]);
        if killed.status.signal().is_none() {
            // Fewer undos than n: this run unplugged all of blue and was not killed.
            assert_eq!(code(&killed), 0, "{}", stderr(&killed));
            assert!(n > 2, "blue's unplug took only {} undo(s)", n - 1);
            break;
        }
        let when = format!("unplug killed after undo {n}");
        let said = s.converges_after(&killed, &unplugged, &when);
        assert!(
            said.contains("the plan changed: unplugged blue\n"),
            "{when}: {said}"
        );
        assert_eq!(code(&s.down()), 0);

        // Killed, then `down`: the namespace CNI made.
        manifest(MASQUERADE_AND_BLUE);
        assert_eq!(code(&s.up(&[])), 0);
        manifest(BLUE_ABSENT);
        let killed = s.up(&[("NETBIND_KILL_AFTER_UNPLUG", n.to_string())]);
        s.down_restores_after(&killed, &cni, &format!("an unplug killed after undo {n}"));
    }
}

#[test]
fn new_ports_on_a_running_masquerade_reload_only_its_nat_rules() {
    let s = setup(MASQUERADE_ONLY, false);
    let cni = s.snapshot();
    assert_eq!(code(&s.up(&[])), 0);
    let (bridge, tap) = (link_line(&s, "k6t-eth0"), link_line(&s, "tap0"));
    let all_ports = s.pod.pod.sh("nft -s list ruleset").unwrap();

    write(
        s.dir.path(),
        "vm.yaml",
        MASQUERADE_ONLY.replace("masquerade: {}", "masquerade: {}, ports: [{port: 8080}]"),
    );
    let again = s.up(&[]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("the plan changed: changed default (nftables)\n"),
        "{}",
        stderr(&again)
    );
    let listed = s.pod.pod.sh("nft -s list ruleset").unwrap();
    assert_ne!(listed, all_ports);
    assert!(listed.contains("tcp dport 8080"), "{listed}");
    assert_eq!(link_line(&s, "k6t-eth0"), bridge, "the bridge was touched");
    assert_eq!(link_line(&s, "tap0"), tap, "the tap was touched");

    assert_eq!(code(&s.down()), 0);
    assert_eq!(netbind_testbed::settles(&cni, || s.snapshot()), cni);
}

#[test]
fn status_names_each_interface_its_changes_and_its_server() {
    let s = setup(MASQUERADE_AND_BLUE, true);
    let none = s.status("json");
    assert_eq!(code(&none), 1, "{}", stderr(&none));
    assert!(
        stderr(&none).contains("nothing recorded"),
        "{}",
        stderr(&none)
    );

    let (up, _) = serving_up(&s);
    let out = s.status("json");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["object"], "VirtualMachineInstance/ns/vm");
    assert_eq!(doc["complete"], true);
    let ifaces = doc["interfaces"].as_array().unwrap();
    let names: Vec<&str> = ifaces.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "blue"]);
    assert_eq!(ifaces[0]["steps"]["nftables"], 1);
    assert_eq!(ifaces[1]["steps"]["nftables"], 0);
    let changes: u64 = ifaces.iter().map(|i| i["changes"].as_u64().unwrap()).sum();
    assert_eq!(changes, doc["changes"].as_u64().unwrap());
    assert!(changes > 0);
    for i in ifaces {
        assert_eq!(i["servedBy"], up.0.id(), "{i}");
    }
    let table = stdout(&s.status("table"));
    assert!(
        table.contains(&format!("netbind up, pid {}", up.0.id())),
        "{table}"
    );
    assert_eq!(doc["pending"]["inSync"], true, "{doc}");
    assert!(table.contains("nothing to change"), "{table}");
    drop(up);
    let after = s.status("json");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&after)).unwrap();
    assert!(doc["interfaces"][0]["servedBy"].is_null(), "{doc}");

    // The manifest marks blue absent: status says what `up` would do, and changes nothing.
    let before = s.snapshot_of_up();
    write(s.dir.path(), "vm.yaml", BLUE_ABSENT);
    let doc: serde_json::Value = serde_json::from_str(&stdout(&s.status("json"))).unwrap();
    assert_eq!(doc["pending"]["inSync"], false, "{doc}");
    assert_eq!(
        doc["pending"]["unplug"],
        serde_json::json!(["blue"]),
        "{doc}"
    );
    assert!(
        stdout(&s.status("table")).contains("`up` now would: unplug blue"),
        "{}",
        stdout(&s.status("table"))
    );
    assert_eq!(s.snapshot_of_up(), before);
    assert_eq!(code(&s.down()), 0);
}

#[test]
fn a_hot_plug_killed_after_any_step_converges_when_run_again() {
    let s = setup(MASQUERADE_AND_BLUE, true);
    let manifest = |text: &str| write(s.dir.path(), "vm.yaml", text);
    // Where a hot-plug of blue must end: as if both had been planned from the start.
    let both = s.up(&[]);
    assert_eq!(code(&both), 0, "{}", stderr(&both));
    let total = steps_of(&both);
    let plugged = s.snapshot_of_up();
    assert_eq!(code(&s.down()), 0);

    for n in 1..=total {
        manifest(BLUE_ABSENT);
        assert_eq!(code(&s.up(&[])), 0);
        manifest(MASQUERADE_AND_BLUE);
        let killed = s.up(&[("NETBIND_KILL_AFTER_STEP", n.to_string())]);
        s.converges_after(
            &killed,
            &plugged,
            &format!("hot-plug killed after step {n}"),
        );
        assert_eq!(code(&s.down()), 0);
    }
}

#[test]
fn a_hot_plugged_sriov_vf_changes_nothing_in_the_pod_and_reaches_the_domain() {
    let s = setup(MASQUERADE_ONLY, false);
    assert_eq!(code(&s.up(&[])), 0);
    let built = s.snapshot_of_up();
    // The device plugin gave the pod a VF; Multus says which in network-status.
    let status = write(
        s.dir.path(),
        "status.json",
        r#"[{"name":"sriov/sriov-network","interface":"net1","mac":"02:00:00:00:00:01","dns":{},"device-info":{"type":"pci","version":"1.0.0","pci":{"pci-address":"0000:65:00.2"}}}]"#,
    );
    write(
        s.dir.path(),
        "vm.yaml",
        MASQUERADE_ONLY
            .replace(
                "{name: default, masquerade: {}}",
                "{name: default, masquerade: {}}, {name: vf, sriov: {}}",
            )
            .replace(
                "{name: default, pod: {}}",
                "{name: default, pod: {}}, {name: vf, multus: {networkName: sriov/sriov-network}}",
            ),
    );
    let domain = s.dir.path().join("domain.json");
    let plug = s
        .up_command()
        .args(["--no-serve", "--network-status", &status, "--domain-out"])
        .arg(&domain)
        .output()
        .unwrap();
    assert_eq!(code(&plug), 0, "{}", stderr(&plug));
    assert!(
        stderr(&plug).contains("the plan changed: plugged vf\n"),
        "{}",
        stderr(&plug)
    );
    assert!(stderr(&plug).contains(" 0 changed"), "{}", stderr(&plug));
    assert_eq!(s.snapshot_of_up(), built);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&domain).unwrap()).unwrap();
    let vf = doc["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "vf")
        .unwrap_or_else(|| panic!("no vf in {doc}"));
    assert!(
        vf["qemuArgs"]
            .to_string()
            .contains("vfio-pci,host=0000:65:00.2"),
        "{vf}"
    );
    assert!(
        vf["libvirtXml"].as_str().unwrap().contains("<hostdev"),
        "{vf}"
    );
    assert_eq!(code(&s.down()), 0);
}

#[test]
fn an_up_waits_while_another_changes_the_same_state_dir() {
    let s = setup(MASQUERADE_ONLY, false);
    let state = netbind_netns::journal::StateDir::new(&s.state);
    state.create().unwrap();
    let turn = state.lock().unwrap();
    let mut waiting = Running(s.up_command().arg("--no-serve").spawn().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.0.try_wait().unwrap().is_none(),
        "up went ahead while the state dir was locked"
    );
    assert!(s.pod.pod.links().unwrap().iter().all(|l| l != "k6t-eth0"));
    drop(turn);
    let status = waiting.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(s.pod.pod.links().unwrap().contains("k6t-eth0"));
    assert_eq!(code(&s.down()), 0);
}

/// How many times the threads of process `pid` have run on a CPU so far (schedstat).
fn times_run(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_serving_up_sleeps_while_nothing_happens_and_stops_at_once() {
    let s = setup(MASQUERADE_ONLY, false);
    let (mut up, _) = serving_up(&s);
    // DHCPv4, DHCPv6 and RA block in their receives; the main thread waits for signals.
    // (Polling every 250 ms per service and 50 ms in the main loop was 64 runs in 2 s.)
    std::thread::sleep(Duration::from_millis(500));
    let before = times_run(up.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let runs = times_run(up.0.id()) - before;
    eprintln!("an idle `up` ran {runs} times in 2 s");
    assert!(runs < 10, "an idle `up` ran {runs} times in 2 s");

    let asked = Instant::now();
    nix_kill(up.0.id());
    assert_eq!(up.0.wait().unwrap().code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "up took {:?} to stop",
        asked.elapsed()
    );
    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
}

/// `down` while an `up` still serves: the `up` is stopped first (and ends cleanly), then
/// everything is undone; no `up` is left running over links that are gone.
#[test]
fn down_under_a_serving_up_stops_it_first() {
    let s = setup(MASQUERADE_ONLY, false);
    let cni = s.snapshot();
    let (mut up, _) = serving_up(&s);
    let down = s.down();
    assert_eq!(code(&down), 0, "{}", stderr(&down));
    assert!(
        stderr(&down).contains(&format!("(PID {}) first", up.0.id())),
        "{}",
        stderr(&down)
    );
    let status = up.0.try_wait().expect("wait for up");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the serving up ended, cleanly, before down returned"
    );
    assert_eq!(netbind_testbed::settles(&cni, || s.snapshot()), cni);
}

/// An `up` that cannot plan (a Multus network the pod does not have) changes nothing and
/// leaves no state dir behind (it had saved the pod view first).
#[test]
fn a_failed_first_up_leaves_no_state_behind() {
    let missing = "\
kind: VirtualMachineInstance
metadata: {name: vm, namespace: ns}
spec:
  domain: {devices: {interfaces: [{name: default, masquerade: {}}, {name: red, bridge: {}}]}}
  networks: [{name: default, pod: {}}, {name: red, multus: {networkName: red}}]
";
    let s = setup(missing, false);
    let cni = s.snapshot();
    let out = s.up_command().arg("--no-serve").output().unwrap();
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert!(
        !std::path::Path::new(&s.state).exists(),
        "state dir left behind: {:?}",
        std::fs::read_dir(&s.state).map(|d| d.count())
    );
    assert_eq!(s.snapshot(), cni, "nothing changed in the pod");
}

/// The launcher is the VM's, not the run's: a later `up` (a hot-plug) without
/// `--launcher` keeps the recorded one, one with another is refused before anything
/// changes, and after `down` the VM starts afresh.
#[test]
fn a_later_up_keeps_the_recorded_launcher_and_refuses_another() {
    let s = setup(BRIDGE, false);
    let launcher_of = |out: &Output, domain: &std::path::Path| {
        assert_eq!(code(out), 0, "{}", stderr(out));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(domain).unwrap()).unwrap();
        json["launcher"].as_str().unwrap().to_string()
    };
    let domain = s.dir.path().join("domain.json");
    let up = |extra: &[&str]| {
        let mut cmd = s.up_command();
        cmd.arg("--no-serve")
            .arg("--domain-out")
            .arg(&domain)
            .args(extra);
        cmd.output().expect("run netbind up")
    };
    assert_eq!(
        launcher_of(&up(&["--launcher", "libvirt"]), &domain),
        "libvirt"
    );
    assert_eq!(launcher_of(&up(&[]), &domain), "libvirt");
    let other = up(&["--launcher", "qemu"]);
    assert_eq!(code(&other), 2, "{}", stderr(&other));
    assert!(
        stderr(&other).contains("set up for --launcher libvirt"),
        "{}",
        stderr(&other)
    );
    assert_eq!(code(&s.down()), 0);
    assert_eq!(launcher_of(&up(&["--launcher", "qemu"]), &domain), "qemu");
    assert_eq!(code(&s.down()), 0);
}
