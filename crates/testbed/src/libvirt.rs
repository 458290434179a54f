//! A libvirt daemon of the test's own, inside a pod namespace, for the tests that let
//! libvirt start netbind the way KubeVirt's launcher does.
//!
//! How it works: `libvirtd` runs inside the given network namespace (so that what it
//! spawns — QEMU, the `passt` of an interface's passt back end — lives there, as in a
//! launcher pod) and inside a mount namespace of its own where `/run/libvirt`,
//! `/var/lib/libvirt` and `/var/log/libvirt` are fresh tmpfs, `/var/cache/libvirt` is the
//! test bed's own cache (QEMU's capabilities, slow to probe under TCG) and `/etc/libvirt` is
//! this fixture's configuration: nothing of the machine's libvirt state is read or
//! changed, and all but the cache is gone with the daemon. The daemon's socket is put in the
//! fixture's directory, reachable from outside the mount namespace, and `virsh` talks to it
//! with `qemu:///system?socket=…`. The QEMU driver runs guests and the programs it spawns
//! (passt) as the given uid and gid (KubeVirt's qemu user is 107), without a security
//! driver, cgroups, private `/dev` or virtlogd (none of which exist on a machine without
//! systemd). `PATH` of the daemon starts with the directories the test gives: that is how a
//! test puts netbind where libvirt looks for `passt`.
//!
//! What holds: on drop every domain is destroyed and the daemon killed; the programs it
//! spawned live in the test's namespace, whose own guard kills what is left there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{Netns, Process};
use crate::{Error, Result, cmd};

pub struct Libvirtd {
    dir: tempfile::TempDir,
    process: Process,
    uri: String,
}

/// libvirt's cache of what each QEMU binary can do, kept across runs: probing QEMU under
/// TCG takes a minute, and libvirt checks the cache against the binary and itself.
const CACHE: &str = "/var/cache/netbind-testbed/libvirt";

/// Mounts the private state directories and starts the daemon (run by `unshare -m`).
const START: &str = r#"set -e
for d in /run/libvirt /var/lib/libvirt /var/log/libvirt; do
  mkdir -p "$d"; mount -t tmpfs -o mode=0755 tmpfs "$d"
done
mkdir -p /var/cache/libvirt "$3"
mount --bind "$3" /var/cache/libvirt
mount --bind "$1/etc" /etc/libvirt
# A /dev/kvm the qemu user cannot open makes libvirt throw its capability cache away and
# probe QEMU again and again (a minute per domain start): here it may open it. Guests are
# `type='qemu'` (TCG) all the same.
if [ -c /dev/kvm ]; then
  mkdir -p "$1/dev"; mount -t tmpfs tmpfs "$1/dev"
  mknod -m 0666 "$1/dev/kvm" c $((0x$(stat -c %t /dev/kvm))) $((0x$(stat -c %T /dev/kvm)))
  mount --bind "$1/dev/kvm" /dev/kvm
fi
export PATH="$2:$PATH"
exec libvirtd -f /etc/libvirt/libvirtd.conf --pid-file "$1/libvirtd.pid"
"#;

impl Libvirtd {
    /// Starts the daemon in `netns`; guests and their helpers run as `uid:gid`; `path_first`
    /// goes in front of the daemon's `PATH`.
    pub fn start(netns: &Netns, uid: u32, gid: u32, path_first: &[&Path]) -> Result<Libvirtd> {
        crate::require_privileges(&["libvirtd", "virsh", "unshare"])?;
        let dir = tempfile::Builder::new()
            .prefix("nb-libvirt-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create a temp dir for libvirtd",
                path: std::env::temp_dir(),
                source,
            })?;
        let root = dir.path();
        let write = |name: &str, text: String| {
            let path = root.join(name);
            std::fs::write(&path, text).map_err(|source| Error::Io {
                what: "write",
                path,
                source,
            })
        };
        for sub in ["etc", "sock", "guest"] {
            let path = root.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| Error::Io {
                what: "create",
                path: path.clone(),
                source,
            })?;
        }
        // Guests (running as `uid`) read their kernel and initramfs here and write their
        // console there.
        cmd::checked(Command::new("chmod").args(["0755", &root.display().to_string()]))?;
        cmd::checked(Command::new("chown").args([
            &format!("{uid}:{gid}"),
            &root.join("guest").display().to_string(),
        ]))?;
        write(
            "etc/libvirtd.conf",
            format!(
                "unix_sock_dir = \"{sock}\"\nunix_sock_rw_perms = \"0700\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\nlog_outputs = \"2:file:{log}\"\n",
                sock = root.join("sock").display(),
                log = root.join("libvirtd.log").display()
            ),
        )?;
        write(
            "etc/qemu.conf",
            format!(
                "user = \"+{uid}\"\ngroup = \"+{gid}\"\ndynamic_ownership = 0\nremember_owner = 0\nsecurity_driver = \"none\"\ncgroup_controllers = [ ]\nnamespaces = [ ]\nstdio_handler = \"file\"\n"
            ),
        )?;
        let path: Vec<String> = path_first.iter().map(|p| p.display().to_string()).collect();
        let mut c = netns.command(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            START,
            "sh",
            &root.display().to_string(),
            &path.join(":"),
            CACHE,
        ]);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let process = netns.spawn_command(c)?;
        let uri = format!(
            "qemu:///system?socket={}",
            root.join("sock/libvirt-sock").display()
        );
        let mut daemon = Libvirtd { dir, process, uri };
        daemon.wait_until_up(Duration::from_secs(20))?;
        Ok(daemon)
    }

    fn wait_until_up(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_virsh(&["version"])?.status.success() {
                return Ok(());
            }
            if let Some(status) = self.process.wait_timeout(Duration::from_millis(100))? {
                return Err(Error::Fixture(format!(
                    "libvirtd exited ({status}) before it answered; its log:\n{}",
                    self.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::Fixture(format!(
                    "libvirtd does not answer after {timeout:?}; its log:\n{}",
                    self.log()
                )));
            }
        }
    }

    /// A directory the guests' uid can read and write: kernels, initramfs, consoles.
    pub fn guest_dir(&self) -> PathBuf {
        self.dir.path().join("guest")
    }

    /// `virsh -c URI args…`, whatever its exit status.
    pub fn try_virsh(&self, args: &[&str]) -> Result<Output> {
        cmd::output(Command::new("virsh").arg("-c").arg(&self.uri).args(args))
    }

    /// `virsh -c URI args…`; a non-zero exit is an error with its stderr.
    pub fn virsh(&self, args: &[&str]) -> Result<Output> {
        cmd::checked(Command::new("virsh").arg("-c").arg(&self.uri).args(args))
    }

    /// The daemon's log (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("libvirtd.log")).unwrap_or_default()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        if let Ok(out) = self.try_virsh(&["list", "--name"]) {
            for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.try_virsh(&["destroy", name]);
            }
        }
        self.process.kill();
    }
}

/// A domain that boots `kernel` with `initrd` under TCG, its serial console to `console`,
/// with `devices` (libvirt XML: the interfaces under test) and nothing else.
pub fn domain_xml(
    name: &str,
    kernel: &Path,
    initrd: &Path,
    console: &Path,
    devices: &str,
) -> String {
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
{devices}
  </devices>
</domain>
",
        kernel = kernel.display(),
        initrd = initrd.display(),
        console = console.display(),
    )
}
