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
    /// `ip -6 route`, `nft list ruleset` — with volatile fields (bridge timers, address and
    /// route lifetimes, DAD `tentative` flags, nftables counters) normalised away, so that
    /// two snapshots are equal exactly when the configuration is.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let commands: [&[&str]; 5] = [
            &["ip", "-d", "link", "show"],
            &["ip", "addr", "show"],
            &["ip", "route", "show"],
            &["ip", "-6", "route", "show"],
            &["nft", "list", "ruleset"],
        ];
        let mut sections = Vec::new();
        for argv in commands {
            let out = self.exec(argv)?;
            sections.push((
                argv.join(" "),
                normalise(&String::from_utf8_lossy(&out.stdout)),
            ));
        }
        Ok(Snapshot { sections })
    }
}

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

/// Tokens whose following token is volatile.
const VOLATILE_NEXT: &[&str] = &[
    "hello_timer",
    "tcn_timer",
    "topology_change_timer",
    "gc_timer",
    "hold_timer",
    "message_age_timer",
    "forward_delay_timer",
    "valid_lft",
    "preferred_lft",
    "expires",
    "packets",
    "bytes",
];

/// Collapses runs of spaces, keeps indentation, drops `tentative`, replaces volatile values
/// by `*` (lifetimes keep `forever`, which is configuration).
pub(crate) fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        out.push_str(&line[..indent]);
        let mut words = Vec::new();
        let mut mask_next = false;
        for w in line.split_whitespace() {
            if mask_next {
                mask_next = false;
                words.push(if w == "forever" { w } else { "*" });
                continue;
            }
            if w == "tentative" {
                continue;
            }
            mask_next = VOLATILE_NEXT.contains(&w);
            words.push(w);
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
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
