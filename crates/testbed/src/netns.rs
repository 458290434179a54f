//! Network namespace guards, processes inside them, and state snapshots.
//!
//! A [`Netns`] is created with `ip netns add` (so it is pinned at `/run/netns/NAME` and
//! every tool can find it) and deleted on drop after every process still inside has been
//! killed: `ip netns del` only unmounts the pin, and a namespace with a live process in it
//! would keep its links forever. Names are `nb-<tag>-<pid>-<n>`, unique per process; a
//! stale namespace of the same name (left by a crashed run whose pid is reused) is removed
//! first. `ip netns exec` also bind-mounts `/etc/netns/NAME/*` over `/etc`, which
//! [`Netns::set_resolv_conf`] uses; that directory is removed on drop too.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cmd;
use crate::{Error, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique per-process suffix: `<pid>-<n>`.
pub(crate) fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace owned by a test; deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Moves the calling thread into the network namespace at `path` (`/run/netns/NAME` or
/// [`Netns::path`]); sockets it opens afterwards belong there. Only this thread moves: run
/// it on a thread of its own.
pub fn enter(path: impl AsRef<std::path::Path>) -> Result<()> {
    let path = path.as_ref();
    let io = |what, source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(|e| io("open the namespace", e))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io("enter the namespace (setns)", e.into()))
}

impl Netns {
    /// Creates `nb-<tag>-<pid>-<n>` and brings its `lo` up. `tag` is cut to 8 characters.
    pub fn new(tag: &str) -> Result<Netns> {
        crate::require_privileges(&["ip"])?;
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect();
        let name = format!("nb-{tag}-{}", unique_suffix());
        if PathBuf::from("/run/netns").join(&name).exists() {
            delete_namespace(&name);
        }
        cmd::checked(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, what CNI calls `CNI_NETNS`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip netns exec NAME program args…`, not yet run.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c.args(argv);
        c
    }

    /// Runs `argv` inside the namespace; a non-zero exit is an error with its stderr.
    pub fn exec<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Result<Output> {
        cmd::checked(&mut self.command(argv))
    }

    /// Runs `argv` inside the namespace and returns its output whatever the exit status.
    pub fn try_exec<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Result<Output> {
        cmd::output(&mut self.command(argv))
    }

    /// Runs a shell script inside the namespace (checked) and returns its stdout.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.exec(&["sh", "-c", script])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `argv` inside the namespace (stdin null, stdout/stderr piped). The returned
    /// guard kills it on drop; the namespace's own drop kills anything left inside.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Result<Process> {
        let mut c = self.command(argv);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.spawn_command(c)
    }

    /// Starts a prepared command (from [`Netns::command`]) with its own stdio settings.
    pub fn spawn_command(&self, mut c: Command) -> Result<Process> {
        let child = c.spawn().map_err(|source| Error::Spawn {
            command: cmd::display(&c),
            source,
        })?;
        Ok(Process {
            child,
            command: cmd::display(&c),
        })
    }

    /// Names of the links in the namespace.
    pub fn links(&self) -> Result<BTreeSet<String>> {
        let out = self.exec(&["ip", "-o", "link", "show"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect())
    }

    /// Pids of the processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<u32> {
        namespace_pids(&self.name)
    }

    /// Writes `/etc/netns/NAME/resolv.conf`, which `ip netns exec` shows as
    /// `/etc/resolv.conf` to everything run inside (removed on drop).
    pub fn set_resolv_conf(&self, text: &str) -> Result<()> {
        let dir = PathBuf::from("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: "create",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("resolv.conf");
        std::fs::write(&path, text).map_err(|source| Error::Io {
            what: "write",
            path,
            source,
        })
    }

    /// The namespace's network state as text — `ip -d link`, `ip addr`, `ip route`,
    /// `ip -6 route`, `nft list ruleset` and the sysctls netbind may write ([`SYSCTLS`]) —
    /// normalised so that two snapshots are equal exactly when the configuration is:
    /// volatile fields (bridge timers, address and route lifetimes, DAD `tentative` flags,
    /// nftables counters) and history (ifindexes, peer ifindexes, link netnsids) are masked,
    /// and route lines are sorted (among routes with the same prefix, such as
    /// `fe80::/64 dev …`, the kernel lists them in the order their links came up).
    pub fn snapshot(&self) -> Result<Snapshot> {
        crate::require_privileges(&["ip", "nft"])?;
        // (command, whether the order of its lines is history rather than configuration)
        let commands = [
            (LINK_SECTION, false),
            (ADDR_SECTION, false),
            ("ip route show", true),
            ("ip -6 route show", true),
            ("nft list ruleset", false),
        ];
        let mut sections = Vec::new();
        for (command, sort) in commands {
            let argv: Vec<&str> = command.split(' ').collect();
            let out = self.exec(&argv)?;
            let mut text = normalise(&String::from_utf8_lossy(&out.stdout));
            if sort {
                text = sorted_lines(&text);
            }
            sections.push((command.to_string(), text));
        }
        let mut cat = vec!["cat".to_string()];
        cat.extend(
            SYSCTLS
                .iter()
                .map(|key| format!("/proc/sys/{}", key.replace('.', "/"))),
        );
        let out = self.exec(&cat)?;
        let values = String::from_utf8_lossy(&out.stdout);
        let mut values = values.lines();
        let mut sysctls = String::new();
        for key in SYSCTLS {
            let value = values.next().unwrap_or("(missing)").trim();
            sysctls.push_str(&format!("{key} = {value}\n"));
        }
        sections.push(("sysctl".to_string(), sysctls));
        Ok(Snapshot { sections })
    }
}

/// The namespace-wide sysctls netbind may write, recorded by [`Netns::snapshot`].
pub const SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv6.conf.all.forwarding",
];

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

fn namespace_pids(name: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what is left inside (processes our tests started there), then deletes the pin
/// and the `/etc/netns` directory. Best effort: runs from `Drop`.
fn delete_namespace(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = namespace_pids(name);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(name));
}

/// A process started inside a namespace; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    command: String,
}

impl Process {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.command
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.child.try_wait().map_err(|source| Error::Spawn {
                command: self.command.clone(),
                source,
            })?;
            if status.is_some() || Instant::now() >= deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Normalised network state of one namespace (see [`Netns::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `(command, normalised output)` in a fixed order.
    pub sections: Vec<(String, String)>,
}

impl Snapshot {
    /// `None` when equal; otherwise, per differing section, the lines only in `self`
    /// (`-`) and only in `other` (`+`).
    pub fn diff(&self, other: &Snapshot) -> Option<String> {
        let mut out = String::new();
        for ((cmd, a), (_, b)) in self.sections.iter().zip(&other.sections) {
            if a == b {
                continue;
            }
            out.push_str(&format!("## {cmd}\n"));
            let al: Vec<&str> = a.lines().collect();
            let bl: Vec<&str> = b.lines().collect();
            for l in al.iter().filter(|l| !bl.contains(l)) {
                out.push_str(&format!("- {l}\n"));
            }
            for l in bl.iter().filter(|l| !al.contains(l)) {
                out.push_str(&format!("+ {l}\n"));
            }
            if out.ends_with(&format!("## {cmd}\n")) {
                out.push_str("(same lines, different order or count)\n");
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// A copy with the MAC of every tap link (`tun type tap` in `ip -d link`) masked as
    /// `link/ether <tap mac>` in the link and address sections. The kernel gives a tap a
    /// random MAC unless told one, so two builds of a plan that names none differ there and
    /// nowhere else; everything else about the taps is still compared.
    pub fn with_tap_macs_masked(&self) -> Snapshot {
        let taps: BTreeSet<String> = self
            .sections
            .iter()
            .filter(|(cmd, _)| cmd == LINK_SECTION)
            .flat_map(|(_, text)| link_blocks(text))
            .filter(|(_, block)| {
                block
                    .iter()
                    .any(|l| l.trim_start().starts_with("tun type tap "))
            })
            .map(|(name, _)| name)
            .collect();
        let sections = self
            .sections
            .iter()
            .map(|(cmd, text)| {
                if cmd != LINK_SECTION && cmd != ADDR_SECTION {
                    return (cmd.clone(), text.clone());
                }
                let mut out = String::new();
                for (name, block) in link_blocks(text) {
                    for line in block {
                        let body = line.trim_start();
                        match body.strip_prefix("link/ether ") {
                            Some(rest) if taps.contains(&name) => {
                                let mut words = vec!["link/ether", "<tap mac>"];
                                words.extend(rest.split_whitespace().skip(1));
                                out.push_str(&line[..line.len() - body.len()]);
                                out.push_str(&words.join(" "));
                            }
                            _ => out.push_str(line),
                        }
                        out.push('\n');
                    }
                }
                (cmd.clone(), out)
            })
            .collect();
        Snapshot { sections }
    }
}

const LINK_SECTION: &str = "ip -d link show";
const ADDR_SECTION: &str = "ip addr show";

/// Splits `ip link`/`ip addr` text into `(link name, its lines)`: a link starts at an
/// unindented line `name[@peer]: …` (ifindexes are already masked).
fn link_blocks(text: &str) -> Vec<(String, Vec<&str>)> {
    let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        let starts_link = !line.is_empty() && !line.starts_with(char::is_whitespace);
        match blocks.last_mut() {
            Some((_, lines)) if !starts_link => lines.push(line),
            _ => {
                let first = line.split_whitespace().next().unwrap_or("");
                let name = first.trim_end_matches(':');
                let name = name.split('@').next().unwrap_or(name);
                blocks.push((name.to_string(), vec![line]));
            }
        }
    }
    blocks
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (cmd, text) in &self.sections {
            writeln!(f, "## {cmd}")?;
            f.write_str(text)?;
        }
        Ok(())
    }
}

/// Tokens whose following token is volatile (any `…_timer` too) or history.
const VOLATILE_NEXT: &[&str] = &[
    "valid_lft",
    "preferred_lft",
    "expires",
    "packets",
    "bytes",
    "link-netnsid",
];

/// Collapses runs of spaces, keeps indentation, drops `tentative`, replaces volatile values
/// by `*` (lifetimes keep `forever`, which is configuration), and masks history: the
/// ifindex that starts a link's first line (`7: eth0…` → `eth0…`) and a veth's peer
/// ifindex (`eth0@if12:` → `eth0@if*:`).
pub(crate) fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        out.push_str(&line[..indent]);
        let mut words: Vec<String> = Vec::new();
        let mut mask_next = false;
        for (i, w) in line.split_whitespace().enumerate() {
            if mask_next {
                mask_next = false;
                words.push(if w == "forever" { w } else { "*" }.to_string());
                continue;
            }
            if w == "tentative" || (i == 0 && indent == 0 && is_ifindex(w)) {
                continue;
            }
            mask_next = VOLATILE_NEXT.contains(&w) || w.ends_with("_timer");
            words.push(mask_peer_ifindex(w));
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

/// `12:`
fn is_ifindex(word: &str) -> bool {
    word.strip_suffix(':')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `eth0@if12:` → `eth0@if*:`; anything else unchanged.
fn mask_peer_ifindex(word: &str) -> String {
    if let Some((name, rest)) = word.split_once("@if") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            return format!("{name}@if*{}", &rest[digits..]);
        }
    }
    word.to_string()
}

/// The lines of `text` in sorted order.
fn sorted_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_timers_lifetimes_and_counters_are_masked() {
        let a = "    bridge hello_timer    0.00 gc_timer  220.52 x 1\n    inet6 fe80::1/64 scope link tentative \n       valid_lft 86399sec preferred_lft forever\n  counter packets 10 bytes 840 accept\n";
        assert_eq!(
            normalise(a),
            "    bridge hello_timer * gc_timer * x 1\n    inet6 fe80::1/64 scope link\n       valid_lft * preferred_lft forever\n  counter packets * bytes * accept\n"
        );
    }

    #[test]
    fn ifindexes_peer_ifindexes_and_netnsids_are_masked() {
        let a = "7: eth0@if12: <BROADCAST,UP> mtu 1400\n    link/ether 0a:58:0a:58:00:02 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n    inet 10.88.0.2/24 brd 10.88.0.255 scope global eth0\n";
        assert_eq!(
            normalise(a),
            "eth0@if*: <BROADCAST,UP> mtu 1400\n    link/ether 0a:58:0a:58:00:02 brd ff:ff:ff:ff:ff:ff link-netnsid *\n    inet 10.88.0.2/24 brd 10.88.0.255 scope global eth0\n"
        );
        // Not an ifindex: an indented first word, and a name that merely contains `@if`.
        assert_eq!(
            normalise("    12: x\nbr@ifx: y\n"),
            "    12: x\nbr@ifx: y\n"
        );
    }

    #[test]
    fn route_lines_are_sorted() {
        assert_eq!(
            sorted_lines("fe80::/64 dev pod1 proto kernel\nfe80::/64 dev eth0 proto kernel\n"),
            "fe80::/64 dev eth0 proto kernel\nfe80::/64 dev pod1 proto kernel\n"
        );
        assert_eq!(sorted_lines(""), "");
    }

    #[test]
    fn only_tap_macs_are_masked_and_only_when_asked() {
        let link = "lo: <LOOPBACK,UP> mtu 65536\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\ntap0: <BROADCAST> mtu 1400 master k6t-eth0\n    link/ether 92:e1:b7:6b:ea:a4 brd ff:ff:ff:ff:ff:ff promiscuity 1\n    tun type tap pi off vnet_hdr on persist on user 107\nk6t-eth0: <BROADCAST> mtu 1400\n    link/ether 02:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff promiscuity 0\n    bridge forward_delay 1500\n";
        let addr = "tap0: <BROADCAST> mtu 1400\n    link/ether 92:e1:b7:6b:ea:a4 brd ff:ff:ff:ff:ff:ff\nk6t-eth0: <BROADCAST> mtu 1400\n    link/ether 02:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff\n";
        let route = "default via 10.88.0.1 dev tap0\n";
        let s = Snapshot {
            sections: vec![
                (LINK_SECTION.into(), link.into()),
                (ADDR_SECTION.into(), addr.into()),
                ("ip route show".into(), route.into()),
            ],
        };
        let masked = s.with_tap_macs_masked();
        assert_eq!(
            masked.sections[0].1,
            link.replace(
                "link/ether 92:e1:b7:6b:ea:a4 brd",
                "link/ether <tap mac> brd"
            )
        );
        assert_eq!(
            masked.sections[1].1,
            addr.replace(
                "link/ether 92:e1:b7:6b:ea:a4 brd",
                "link/ether <tap mac> brd"
            )
        );
        assert_eq!(masked.sections[2].1, route);
        assert_eq!(s.sections[0].1, link, "the snapshot itself is unchanged");
        let other_mac = Snapshot {
            sections: s
                .sections
                .iter()
                .map(|(c, t)| {
                    (
                        c.clone(),
                        t.replace("92:e1:b7:6b:ea:a4", "5e:00:00:00:00:01"),
                    )
                })
                .collect(),
        };
        assert_ne!(other_mac, s);
        assert_eq!(other_mac.with_tap_macs_masked(), masked);
    }

    /// Privileged: a namespace-wide sysctl shows in the snapshot; a real tap's MAC is
    /// masked on request, its other settings are not.
    #[test]
    fn sysctls_and_real_taps_show_in_the_snapshot() {
        crate::require_privileges(&["ip", "nft"]).unwrap();
        let ns = Netns::new("snap").unwrap();
        // A new namespace's ip_forward is the host's default (`devconf_inherit_init_net`):
        // read it, flip it, and expect exactly that change.
        let before = ns.snapshot().unwrap();
        let was = ns
            .exec(&["cat", "/proc/sys/net/ipv4/ip_forward"])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap();
        let flipped = if was == "0" { "1" } else { "0" };
        assert!(
            before
                .to_string()
                .contains(&format!("## sysctl\nnet.ipv4.ip_forward = {was}\n")),
            "the snapshot shows net.ipv4.ip_forward = {was} as the namespace has it:\n{before}"
        );
        ns.exec(&[
            "sh",
            "-c",
            &format!("echo {flipped} > /proc/sys/net/ipv4/ip_forward"),
        ])
        .unwrap();
        let diff = before.diff(&ns.snapshot().unwrap()).expect("a change");
        assert_eq!(
            diff,
            format!(
                "## sysctl\n- net.ipv4.ip_forward = {was}\n+ net.ipv4.ip_forward = {flipped}\n"
            )
        );

        let tap = |user: &str| {
            ns.exec(&[
                "ip", "tuntap", "add", "dev", "tap0", "mode", "tap", "user", user,
            ])
            .unwrap();
            let s = ns.snapshot().unwrap();
            ns.exec(&["ip", "link", "del", "tap0"]).unwrap();
            s
        };
        let (first, second, other_user) = (tap("107"), tap("107"), tap("108"));
        assert_ne!(first, second, "the kernel picks a new MAC per tap");
        assert_eq!(first.with_tap_macs_masked(), second.with_tap_macs_masked());
        assert!(
            first
                .with_tap_macs_masked()
                .to_string()
                .contains("link/ether <tap mac> brd"),
            "{first}"
        );
        assert_ne!(
            first.with_tap_macs_masked(),
            other_user.with_tap_macs_masked()
        );
    }

    #[test]
    fn diff_names_the_section_and_the_changed_lines() {
        let a = Snapshot {
            sections: vec![("ip addr".into(), "x\ny\n".into())],
        };
        let b = Snapshot {
            sections: vec![("ip addr".into(), "x\nz\n".into())],
        };
        assert_eq!(a.diff(&a), None);
        assert_eq!(a.diff(&b).unwrap(), "## ip addr\n- y\n+ z\n");
    }
}
