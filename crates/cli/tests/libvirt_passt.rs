//! netbind as libvirt's `passt` (privileged; real libvirtd 11.3 and QEMU 10.0 from
//! bookworm-backports, a real CNI pod; fails, never skips, when any is missing).
//!
//! libvirt's passt back end starts the binary named `passt` on its daemon's `PATH` with
//! passt's command line (`--one-off --socket … --pid … --tcp-ports …`), as the qemu user,
//! waits until it has daemonized and starts QEMU on the socket. Here that binary is a copy
//! of netbind named `passt`, libvirtd is the test's own inside the pod's namespace (see
//! `netbind_testbed::libvirt`), and the qemu user is KubeVirt's, 107, with the pod's
//! `ping_group_range` and unprivileged port start set as virt-handler sets them.
//!
//! The guest configures itself only from what netbind serves (DHCPv4, DHCPv6), reaches a
//! peer pod over TCP and UDP on both families and by ping with the pod's own addresses as
//! source, and a peer reaches the guest's listener on the forwarded port — the only port
//! the pod listens on. The guest's poweroff, and in the second round `virsh destroy`,
//! end the engine (`--one-off`) and free its ports; the second round starts over the
//! socket and pidfile the first left behind.
//!
//! The interface is written by hand in KubeVirt's shapes (`type='user'`; `passtBinding`'s
//! `type='vhostuser'`), and once as netbind's plan renders it: `netbind up --launcher
//! libvirt` prepares the pod (its sysctls) and hands over `libvirtXml` without running an
//! engine of its own, so libvirt's passt is the guest's only engine.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::NETBIND;
use netbind_testbed::agent::{SourceAgent, tcp_line};
use netbind_testbed::libvirt::{Libvirtd, domain_xml};
use netbind_testbed::{GuestImage, Netns, PodFixture, parse_results, require_privileges};

const MAC: &str = "52:54:00:0b:1d:01";
const AGENT_TCP: u16 = 7000;
const AGENT_UDP: u16 = 7001;
const FORWARDED: u16 = 8080;
/// KubeVirt's qemu user and group.
const QEMU_ID: u32 = 107;

const SCRIPT: &str = r#"
IF=$(nic_by_mac @MAC@)
dhcp4 $IF
. /run/dhcp-$IF.env
result address "$ip/$mask"
result tcp4 "$(echo hi | timeout 10 nc -w 5 @PEER4@ @TCP@)"
rm -f /tmp/u; timeout 10 tftp -g -r src -l /tmp/u @PEER4@ @UDP@ > /dev/null 2>&1
result udp4 "$(cat /tmp/u 2>/dev/null)"
if ping -c 2 -W 3 @PEER4@ > /dev/null 2>&1; then result icmp4 ok; else result icmp4 fail; fi
if dhcp6 $IF; then . /run/dhcp6-$IF.env; result address6 "$ip6/$prefixlen6"; fi
result tcp6 "$(echo hi | timeout 10 nc -w 5 @PEER6@ @TCP@)"
rm -f /tmp/u; timeout 10 tftp -g -r src -l /tmp/u @PEER6@ @UDP@ > /dev/null 2>&1
result udp6 "$(cat /tmp/u 2>/dev/null)"
cat > /tmp/reply.sh <<EOF
#!/bin/sh
read line
echo "guest got \$line"
[ "\$line" = done ] && touch /tmp/done
exit 0
EOF
chmod +x /tmp/reply.sh
nc -ll -p @FWD@ -e /tmp/reply.sh &
usleep 300000
echo LISTENING
i=0
while [ $i -lt 600 ] && [ ! -e /tmp/done ]; do usleep 100000; i=$((i + 1)); done
"#;

/// The ports an interface's `<portForward>`s list (`<range start='N'/>`); empty when a
/// `<portForward>` forwards everything.
fn forwarded_ports(interface: &str) -> std::collections::BTreeSet<u16> {
    if interface.contains("proto='tcp'/>") || interface.contains("proto='udp'/>") {
        return Default::default();
    }
    interface
        .split("<range start='")
        .skip(1)
        .filter_map(|r| r.split('\'').next()?.parse().ok())
        .collect()
}

/// The processes in `ns` running the netbind binary copied to `passt`.
fn engines(ns: &Netns, passt: &Path) -> Vec<u32> {
    ns.pids()
        .into_iter()
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == passt))
        .collect()
}

fn wait_for(console: &Path, marker: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.lines().any(|l| l.trim() == marker) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(format!("no {marker:?} after {timeout:?}; console:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn libvirt_runs_netbind_as_the_passt_of_a_user_interface() {
    libvirt_runs_netbind_as_passt(
        "<interface type='user'><backend type='passt' logFile='@LOG@'/><mac address='@MAC@'/><model type='virtio'/>\n      <portForward proto='tcp'><range start='@FWD@'/></portForward></interface>",
    );
}

/// The interface as KubeVirt's virt-launcher writes it for a `passtBinding` with
/// `ports` (v1.8+): vhost-user with the passt back end, shared memfd memory (in
/// `domain_xml`), libvirt starting `passt --vhost-user --one-off --socket … --pid …
/// --interface eth0 --log-file … --tcp-ports 8080`.
#[test]
fn libvirt_runs_netbind_as_the_passt_of_kubevirts_vhostuser_interface() {
    libvirt_runs_netbind_as_passt(
        "<interface type='vhostuser'><source dev='eth0'/><mac address='@MAC@'/><model type='virtio-non-transitional'/><alias name='ua-default'/><backend type='passt' logFile='@LOG@'/>\n      <portForward proto='tcp'><range start='@FWD@'/></portForward></interface>",
    );
}

/// The interface as `netbind up --launcher libvirt` renders it for a `passtBinding` with
/// `macAddress` and `ports`: KubeVirt's vhost-user shape. `up` sets the pod's sysctls and
/// runs no engine; its `logFile` (KubeVirt's `/var/run/kubevirt/passt.log`) is pointed
/// at the test's directory, which this machine has instead.
#[test]
fn libvirt_runs_netbind_as_the_passt_of_the_plans_vhostuser_interface() {
    libvirt_runs_netbind_as_passt("@PLAN@");
}

/// `netbind up --launcher libvirt` serving a passtBinding VM in `pod` until dropped
/// (SIGTERM, then `netbind down`).
struct PlannedUp {
    child: std::process::Child,
    dir: tempfile::TempDir,
    netns: String,
    /// `libvirtXml` of its `--domain-out`.
    interface: String,
}

impl PlannedUp {
    fn start(pod: &PodFixture) -> PlannedUp {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("vm.yaml");
        std::fs::write(
            &manifest,
            format!(
                "kind: VirtualMachineInstance\nmetadata: {{name: lvplan{pid}, namespace: e2e}}\nspec:\n  domain:\n    devices: {{interfaces: [{{name: default, passtBinding: {{}}, macAddress: '{MAC}', ports: [{{port: {FORWARDED}}}]}}]}}\n    resources: {{requests: {{memory: 256Mi}}}}\n  networks: [{{name: default, pod: {{}}}}]\n",
                pid = std::process::id()
            ),
        )
        .unwrap();
        let domain = dir.path().join("domain.json");
        let netns = pod.pod.name().to_string();
        let child = std::process::Command::new(NETBIND)
            .args(["up", &manifest.display().to_string(), "--netns", &netns])
            .args(["--launcher", "libvirt", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--domain-out")
            .arg(&domain)
            .stdin(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
            .spawn()
            .expect("netbind up");
        let mut up = PlannedUp {
            child,
            dir,
            netns,
            interface: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let out: serde_json::Value = loop {
            if let Some(v) = std::fs::read_to_string(&domain)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
            {
                break v;
            }
            assert!(
                Instant::now() < deadline && matches!(up.child.try_wait(), Ok(None)),
                "netbind up wrote no --domain-out:\n{}",
                up.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(out["launcher"], "libvirt", "{out}");
        up.interface = out["libvirtXml"].as_str().unwrap().to_string();
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }
}

impl Drop for PlannedUp {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::SIGTERM,
        );
        let _ = self.child.wait();
        let manifest = self.dir.path().join("vm.yaml");
        let _ = std::process::Command::new(NETBIND)
            .args([
                "down",
                &manifest.display().to_string(),
                "--netns",
                &self.netns,
            ])
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .output();
    }
}

/// Starts a domain with `interface` (`@LOG@`, `@MAC@`, `@FWD@` filled in; `@PLAN@`: the
/// one [`PlannedUp`] renders) twice, and checks each time what the module's summary says.
fn libvirt_runs_netbind_as_passt(interface: &str) {
    require_privileges(&["qemu-system-x86_64", "busybox", "python3", "libvirtd"]).unwrap();
    let pod = PodFixture::new().expect("CNI pod");
    let planned = (interface == "@PLAN@").then(|| PlannedUp::start(&pod));
    let interface = match &planned {
        Some(up) => {
            let xml = up
                .interface
                .replace("logFile='/var/run/kubevirt/passt.log'", "logFile='@LOG@'");
            assert!(
                xml.starts_with("<interface type='vhostuser'>") && xml.contains("@LOG@"),
                "{xml}"
            );
            xml
        }
        None => {
            // What virt-handler sets in a launcher pod for passt.
            pod.pod
                .exec(&[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.ping_group_range={QEMU_ID} {QEMU_ID}"),
                    "net.ipv4.ip_unprivileged_port_start=0",
                ])
                .expect("pod sysctls");
            interface.to_string()
        }
    };
    let interface = interface.as_str();
    let (pod4, pod6) = (pod.pod_ip(false).unwrap(), pod.pod_ip(true).unwrap());
    let (peer4, peer6) = (pod.peer_ip(false).unwrap(), pod.peer_ip(true).unwrap());

    let bin = tempfile::Builder::new()
        .prefix("nb-passt-")
        .tempdir()
        .unwrap();
    let passt = bin.path().join("passt");
    std::fs::copy(NETBIND, &passt).expect("netbind copied as passt");
    std::process::Command::new("chmod")
        .args(["0755", &bin.path().display().to_string()])
        .status()
        .unwrap();
    let libvirt = Libvirtd::start(&pod.pod, QEMU_ID, QEMU_ID, &[bin.path()]).expect("libvirtd");

    let _agent = SourceAgent::start(&pod.peer, AGENT_TCP, AGENT_UDP).expect("peer agent");

    let image = GuestImage::get().expect("guest image");
    let guest = libvirt.guest_dir();
    let (kernel, initrd) = (guest.join("kernel"), guest.join("initrd"));
    std::fs::copy(&image.kernel, &kernel).unwrap();
    let script = SCRIPT
        .replace("@MAC@", MAC)
        .replace("@PEER4@", &peer4.to_string())
        .replace("@PEER6@", &peer6.to_string())
        .replace("@TCP@", &AGENT_TCP.to_string())
        .replace("@UDP@", &AGENT_UDP.to_string())
        .replace("@FWD@", &FORWARDED.to_string());
    let log = guest.join("passt.log");
    let interface = format!("    {interface}")
        .replace("@LOG@", &log.display().to_string())
        .replace("@MAC@", MAC)
        .replace("@FWD@", &FORWARDED.to_string());

    // The first round ends with the guest's poweroff, the second with `virsh destroy`
    // while the guest still runs (its script then holds instead of ending).
    for (round, destroy) in [
        ("first start", false),
        ("start over the stale socket and pidfile", true),
    ] {
        let (script, end) = if destroy {
            (format!("{script}\necho HOLDING\nsleep 600\n"), "HOLDING")
        } else {
            (script.clone(), "DONE")
        };
        std::fs::write(&initrd, image.initramfs_with(&script)).unwrap();
        let console = guest.join(format!("console-{}.log", round.len()));
        let _ = std::fs::remove_file(&log); // each round's engine writes its own
        let xml = guest.join("domain.xml");
        std::fs::write(
            &xml,
            domain_xml("nbpasst", &kernel, &initrd, &console, &interface),
        )
        .unwrap();
        let created = Instant::now();
        libvirt
            .virsh(&["create", &xml.display().to_string()])
            .unwrap_or_else(|e| panic!("{round}: {e:?}\nlibvirtd:\n{}", libvirt.log()));
        let engine = engines(&pod.pod, &passt);
        assert_eq!(engine.len(), 1, "{round}: one engine runs: {engine:?}");
        if let Some(up) = &planned {
            let others: Vec<u32> = (pod.pod.pids().into_iter())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"usernet"))
                })
                .collect();
            assert_eq!(
                others,
                Vec::<u32>::new(),
                "{round}: `up` ran an engine beside libvirt's passt:\n{}",
                up.log()
            );
        }
        let uid = std::fs::read_to_string(format!("/proc/{}/status", engine[0])).unwrap();
        assert!(
            uid.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("107")),
            "{round}: the engine runs as the qemu user: {uid}"
        );
        let argv = std::fs::read(format!("/proc/{}/cmdline", engine[0])).unwrap();
        let argv: Vec<_> = argv
            .split(|b| *b == 0)
            .map(String::from_utf8_lossy)
            .collect();
        assert_eq!(
            argv.iter().any(|a| a == "--vhost-user"),
            interface.contains("type='vhostuser'"),
            "{round}: libvirt's command line: {argv:?}"
        );
        // With `ports` (`<range start=…>`) only those are forwarded: the pod listens on
        // them and on nothing else, TCP or UDP.
        let wanted = forwarded_ports(&interface);
        if !wanted.is_empty() {
            let listening = pod.pod.sh("ss -tlnH; ss -ulnH").unwrap();
            let ports: std::collections::BTreeSet<u16> = listening
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .filter_map(|a| a.rsplit(':').next()?.parse().ok())
                .collect();
            assert_eq!(ports, wanted, "{round}: the pod listens on\n{listening}");
        }

        eprintln!("{round}: created in {:?}", created.elapsed());
        let booted = Instant::now();
        wait_for(&console, "LISTENING", Duration::from_secs(150))
            .unwrap_or_else(|e| panic!("{round}: {e}"));
        eprintln!("{round}: the guest listened after {:?}", booted.elapsed());
        let inbound4 = tcp_line(&pod.peer, SocketAddr::new(pod4, FORWARDED), "from-peer4");
        let inbound6 = tcp_line(&pod.peer, SocketAddr::new(pod6, FORWARDED), "from-peer6");
        let done = tcp_line(&pod.peer, SocketAddr::new(pod4, FORWARDED), "done");
        let text = wait_for(&console, end, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{round}: {e}"));
        let r = parse_results(&text);
        let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("(none)");
        let prefix4 = pod.result().ipv4().unwrap().prefix_len();
        assert_eq!(
            get("address"),
            format!("{pod4}/{prefix4}"),
            "{round}: {text}"
        );
        assert_eq!(get("tcp4"), format!("src={pod4}"), "{round}: {text}");
        assert_eq!(get("udp4"), format!("src={pod4}"), "{round}: {text}");
        assert!(
            get("address6").starts_with(&format!("{pod6}/")),
            "{round}: {text}"
        );
        assert_eq!(get("tcp6"), format!("src={pod6}"), "{round}: {text}");
        assert_eq!(get("udp6"), format!("src={pod6}"), "{round}: {text}");
        assert_eq!(
            inbound4.as_deref(),
            Ok("guest got from-peer4"),
            "{round}: {text}"
        );
        assert_eq!(
            inbound6.as_deref(),
            Ok("guest got from-peer6"),
            "{round}: {text}"
        );
        assert!(done.is_ok(), "{round}: {done:?}");
        // libvirt passed `--log-file` (the back end's `logFile`): what the engine did.
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            logged.contains("passt: guest connected")
                && logged.contains(&format!(
                    "passt: DHCPv4: lease of {pod4}/{prefix4} given to {MAC}"
                )),
            "{round}: {logged}"
        );

        let ended = Instant::now();
        // The guest powers off (`on_poweroff: destroy`) or the domain is destroyed; QEMU
        // closes the socket: a one-off engine ends with it, freeing its ports.
        if destroy {
            libvirt
                .virsh(&["destroy", "nbpasst"])
                .unwrap_or_else(|e| panic!("{round}: virsh destroy: {e:?}"));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !engines(&pod.pod, &passt).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            engines(&pod.pod, &passt).is_empty(),
            "{round}: the engine outlived its guest by 20 s"
        );
        let listening = pod.pod.sh("ss -tlnH; ss -ulnH").unwrap();
        assert!(
            listening.trim().is_empty(),
            "{round}: ports still held after the engine ended:\n{listening}"
        );
        while libvirt
            .try_virsh(&["domstate", "nbpasst"])
            .is_ok_and(|o| o.status.success())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{round}: the engine ended {:?} after the guest",
            ended.elapsed()
        );
    }
}
