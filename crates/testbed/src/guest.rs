//! QEMU guests (TCG) booting Debian's kernel with a busybox initramfs built here.
//!
//! The image ([`GuestImage::get`], once per process): `scripts/fetch-guest-kernel.sh` gives
//! the kernel and the decompressed virtio-net modules (fetching them if the cache is empty).
//! QEMU boots the uncompressed `vmlinux` through PVH when the script extracted it: under TCG
//! the bzImage's self-decompression alone takes about 3 s;
//! the initramfs is written in memory: static `/bin/busybox` with a link per applet,
//! `/dev/console`, the modules and their load order, `/init`, `/lib/testbed.sh` (helpers
//! for scripts) and the udhcpc hook `/usr/share/udhcpc/default.script`.
//!
//! A boot ([`Guest::boot`]) writes, in a temp dir of its own, the image followed by a second
//! archive holding the test script as `/test.sh`, and starts
//! `qemu-system-x86_64 -accel tcg …` inside the namespace with the serial console going to
//! a file. `/init` mounts proc/sys/dev, loads the modules in order, brings `lo` up, prints
//! `NETBIND-GUEST-UP <uptime> <links>`, sources `/lib/testbed.sh`, runs the script in a
//! subshell, prints `RESULT exit <status>` and `DONE`, and powers off (`-no-reboot` makes
//! QEMU exit). The guest process is killed on drop if still running.
//!
//! Scripts report results as lines `RESULT <key> <value>` (one line each: busybox `ip route
//! show X` lists *all* routes, so filter with grep); [`Guest::results`] parses them (the
//! last value of a key wins). Helpers in `/lib/testbed.sh`:
//! - `result KEY VALUE…` prints a result line;
//! - `nic_by_mac MAC` prints the interface holding that MAC;
//! - `dhcp4 IFACE` runs udhcpc once (lease or failure within ~10 s); the hook configures the
//!   address ($ip/$mask), routes (option 121 `$staticroutes` if given, else `$router`),
//!   MTU, `/etc/resolv.conf`, and saves what it got to `/run/dhcp-IFACE.env`
//!   (`ip mask router dns domain search mtu staticroutes serverid lease`) and prints
//!   `DHCP IFACE bound …` on the console;
//! - `wait_ipv6 IFACE [SECONDS]` waits for a non-tentative global IPv6 address (SLAAC by
//!   router advertisements);
//! - `wait_link IFACE [SECONDS]` waits for the carrier;
//! - `dhcp6 IFACE` runs ISC `dhclient -6 -1` once (busybox has no DHCPv6 client, so the
//!   image carries the host's `/usr/sbin/dhclient` with the shared libraries `ldd` names,
//!   when the host has it: Debian `isc-dhcp-client`). It waits for the link-local address
//!   to leave DAD first; its hook `/usr/share/dhclient/hook` adds
//!   `$new_ip6_address/$new_ip6_prefixlen`, waits for DAD, writes the DNS servers to
//!   `/etc/resolv.conf` (appending), saves `ip6 prefixlen6 dns6 search6` to
//!   `/run/dhcp6-IFACE.env` and prints `DHCP6 IFACE <reason> ip6=…`. Without dhclient in
//!   the image it prints why and fails.
//!
//! A boot can carry more of the host's programs ([`GuestOptions::host_binaries`], e.g.
//! iperf3), with their shared libraries the same way, in its own archive: the base image
//! stays as small as the tests need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cpio::Cpio;
use crate::netns::{Netns, Process};
use crate::{Error, Result, cmd};

/// The line `/init` prints once the NIC drivers are loaded.
pub const GUEST_READY_MARKER: &str = "NETBIND-GUEST-UP";

const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /run /tmp /var/run
for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko || echo "RESULT insmod-failed $m"
done
ip link set lo up
hostname guest
echo "NETBIND-GUEST-UP $(cut -d' ' -f1 /proc/uptime) $(ls /sys/class/net | tr '\n' ' ')"
. /lib/testbed.sh
(. /test.sh)
echo "RESULT exit $?"
echo DONE
sync
poweroff -f
echo o > /proc/sysrq-trigger
sleep 1000
"#;

const TESTBED_SH: &str = r#"# Helpers for guest test scripts (sourced by /init).
result() { echo "RESULT $*"; }
nic_by_mac() {
  for d in /sys/class/net/*; do
    if [ "$(cat $d/address)" = "$1" ]; then echo "${d##*/}"; return 0; fi
  done
  return 1
}
dhcp4() {
  ip link set "$1" up
  udhcpc -i "$1" -f -q -n -t 5 -T 2 -O mtu -O staticroutes -O search -O domain \
    -s /usr/share/udhcpc/default.script
}
wait_ipv6() {
  i=0
  while [ $i -lt $((${2:-10} * 10)) ]; do
    if ip -6 addr show dev "$1" scope global | grep -q inet6 \
       && ! ip -6 addr show dev "$1" | grep -q tentative; then return 0; fi
    usleep 100000; i=$((i + 1))
  done
  return 1
}
dhcp6() {
  if [ ! -x /sbin/dhclient ]; then
    echo "DHCP6 $1 no-client: the guest image has no dhclient (apt-get install isc-dhcp-client on the host)"
    return 1
  fi
  ip link set "$1" up
  i=0
  while [ $i -lt 100 ]; do
    ip -6 addr show dev "$1" scope link | grep -q inet6 \
      && ! ip -6 addr show dev "$1" scope link | grep -q tentative && break
    usleep 100000; i=$((i + 1))
  done
  timeout 30 /sbin/dhclient -6 -1 -cf /etc/dhclient6.conf -lf "/run/dhclient6-$1.leases" \
    -pf "/run/dhclient6-$1.pid" -sf /usr/share/dhclient/hook "$1" 2>/run/dhclient6-$1.log
  s=$?
  [ $s = 0 ] || { echo "DHCP6 $1 failed ($s)"; sed 's/^/dhclient: /' /run/dhclient6-$1.log; }
  return $s
}
wait_link() {
  i=0
  while [ $i -lt $((${2:-10} * 10)) ]; do
    [ "$(cat /sys/class/net/$1/carrier 2>/dev/null)" = 1 ] && return 0
    usleep 100000; i=$((i + 1))
  done
  return 1
}
"#;

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc hook: $1 is deconfig, bound, renew, leasefail or nak.
event="$1"
case "$event" in
deconfig)
  ip -4 addr flush dev "$interface"
  ip link set "$interface" up
  ;;
bound|renew)
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  [ -z "$mask" ] && mask=$(ipcalc -p "$ip" "$subnet" | cut -d= -f2)
  ip -4 addr flush dev "$interface"
  ip -4 addr add "$ip/$mask" ${broadcast:+broadcast $broadcast} dev "$interface"
  if [ -n "$staticroutes" ]; then
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      if [ "$2" = 0.0.0.0 ]; then ip -4 route replace "$1" dev "$interface"
      else ip -4 route replace "$1" via "$2" dev "$interface"; fi
      shift 2
    done
  elif [ -n "$router" ]; then
    set -- $router
    ip -4 route replace default via "$1" dev "$interface"
  fi
  : > /etc/resolv.conf
  [ -n "$domain" ] && echo "domain $domain" >> /etc/resolv.conf
  [ -n "$search" ] && echo "search $search" >> /etc/resolv.conf
  for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
  {
    for k in ip mask router dns domain search mtu staticroutes serverid lease hostname; do
      eval "v=\$$k"
      echo "$k='$v'"
    done
  } > "/run/dhcp-$interface.env"
  echo "DHCP $interface $event ip=$ip/$mask router=$router dns=$dns mtu=$mtu routes=$staticroutes"
  ;;
leasefail|nak)
  echo "DHCP $interface $event"
  ;;
esac
exit 0
"#;

const DHCLIENT_HOOK: &str = r#"#!/bin/sh
# dhclient -6 hook: $reason is PREINIT6, BOUND6, RENEW6, REBIND6, REBOOT6, EXPIRE6, …
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
  ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface"
  i=0
  while [ $i -lt 50 ] && ip -6 addr show dev "$interface" | grep -q tentative; do
    usleep 100000; i=$((i + 1))
  done
  for d in $new_dhcp6_name_servers; do echo "nameserver $d" >> /etc/resolv.conf; done
  {
    echo "ip6='$new_ip6_address'"
    echo "prefixlen6='$new_ip6_prefixlen'"
    echo "dns6='$new_dhcp6_name_servers'"
    echo "search6='$new_dhcp6_domain_search'"
  } > "/run/dhcp6-$interface.env"
  echo "DHCP6 $interface $reason ip6=$new_ip6_address/$new_ip6_prefixlen dns=$new_dhcp6_name_servers"
  ;;
esac
exit 0
"#;

/// Files for the image: `(path inside it, bytes)`.
type ImageFiles = Vec<(String, Vec<u8>)>;

/// The host's program `bin` as `name` in the image, with the files it needs (its shared
/// libraries and the dynamic loader, as `ldd` names them), as `(path in the image, bytes)`.
fn host_binary_files(bin: &Path, name: &str) -> Result<ImageFiles> {
    let ldd = cmd::checked(Command::new("ldd").arg(bin))?;
    let mut files = vec![(name.to_string(), bin.to_path_buf())];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push((p.trim_start_matches('/').to_string(), PathBuf::from(p)));
        }
    }
    files
        .into_iter()
        .map(|(name, path)| {
            std::fs::read(&path)
                .map(|b| (name, b))
                .map_err(|source| Error::Io {
                    what: "read",
                    path,
                    source,
                })
        })
        .collect()
}

/// Adds `files` to `c` with their parent directories, except those every image has.
fn add_files(c: &mut Cpio, files: &ImageFiles) {
    let mut dirs = std::collections::BTreeSet::new();
    for (name, _) in files {
        let mut d = Path::new(name).parent();
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_path_buf());
            d = p.parent();
        }
    }
    // Parents sort before children; the base directories exist already.
    for d in dirs.iter().map(|d| d.display().to_string()) {
        if !["sbin", "lib", "usr", "usr/sbin", "usr/bin", "bin"].contains(&d.as_str()) {
            c.dir(&d);
        }
    }
    for (name, bytes) in files {
        c.file(name, 0o755, bytes);
    }
}

/// The kernel and the base initramfs, built once per process.
#[derive(Debug)]
pub struct GuestImage {
    /// What QEMU's `-kernel` gets: the uncompressed ELF `vmlinux` (PVH boot, seconds faster
    /// under TCG) when the fetch script could extract it, else the bzImage.
    pub kernel: PathBuf,
    pub modules_dir: PathBuf,
    /// The base initramfs (uncompressed newc cpio), without `/test.sh`.
    pub initramfs: Vec<u8>,
}

static IMAGE: Mutex<Option<&'static GuestImage>> = Mutex::new(None);

impl GuestImage {
    /// The image, fetching the kernel (via `scripts/fetch-guest-kernel.sh`) if needed.
    pub fn get() -> Result<&'static GuestImage> {
        let mut slot = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(img) = *slot {
            return Ok(img);
        }
        let img: &'static GuestImage = Box::leak(Box::new(Self::build()?));
        *slot = Some(img);
        Ok(img)
    }

    fn build() -> Result<GuestImage> {
        crate::require_privileges(&["busybox", "qemu-system-x86_64"])?;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-guest-kernel.sh");
        let out = cmd::output(Command::new("bash").arg(&script))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(k).map(|v| PathBuf::from(v.trim())))
        };
        let (Some(bzimage), Some(modules_dir), true) =
            (field("kernel "), field("modules "), out.status.success())
        else {
            return Err(Error::GuestKernel {
                detail: format!(
                    "{} exited with {}: {}",
                    script.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        };
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| Error::Io {
                what: "read",
                path: p.to_path_buf(),
                source,
            })
        };
        let kernel = field("vmlinux ").unwrap_or(bzimage);
        let busybox_path = which("busybox").unwrap_or_else(|| PathBuf::from("/bin/busybox"));
        let busybox = read(&busybox_path)?;
        if !is_static_elf(&busybox) {
            return Err(Error::ToolMissing {
                tool: format!(
                    "a static busybox ({} is dynamically linked)",
                    busybox_path.display()
                ),
                hint: "apt-get install -y busybox-static (or run scripts/install-deps.sh)".into(),
            });
        }
        let applets = cmd::checked(Command::new(&busybox_path).arg("--list-full"))?;
        let order = String::from_utf8_lossy(&read(&modules_dir.join("order"))?).into_owned();

        let mut c = Cpio::new();
        for d in [
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "usr/share",
            "usr/share/udhcpc",
            "lib",
            "lib/modules",
            "etc",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "var",
            "root",
        ] {
            c.dir(d);
        }
        c.symlink("var/run", "/run");
        c.char_device("dev/console", 0o600, 5, 1);
        c.char_device("dev/null", 0o666, 1, 3);
        c.file("bin/busybox", 0o755, &busybox);
        for applet in String::from_utf8_lossy(&applets.stdout).lines() {
            let applet = applet.trim();
            if !applet.is_empty() && applet != "bin/busybox" {
                c.symlink(applet, "/bin/busybox");
            }
        }
        for m in order.split_whitespace() {
            let p = modules_dir.join(format!("{m}.ko"));
            c.file(&format!("lib/modules/{m}.ko"), 0o644, &read(&p)?);
        }
        c.file("lib/modules/order", 0o644, order.as_bytes());
        c.file("init", 0o755, INIT.as_bytes());
        c.file("lib/testbed.sh", 0o644, TESTBED_SH.as_bytes());
        c.file(
            "usr/share/udhcpc/default.script",
            0o755,
            UDHCPC_SCRIPT.as_bytes(),
        );
        c.file(
            "etc/hosts",
            0o644,
            b"127.0.0.1 localhost guest\n::1 localhost\n",
        );
        c.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
        c.file("etc/group", 0o644, b"root:x:0:\n");
        let dhclient = ["/usr/sbin/dhclient", "/sbin/dhclient"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file());
        if let Some(bin) = dhclient {
            add_files(&mut c, &host_binary_files(bin, "sbin/dhclient")?);
            c.dir("usr/share/dhclient");
            c.dir("var/lib");
            c.dir("var/lib/dhcp");
            c.file("usr/share/dhclient/hook", 0o755, DHCLIENT_HOOK.as_bytes());
            c.file("etc/dhclient6.conf", 0o644, b"");
        }
        Ok(GuestImage {
            kernel,
            modules_dir,
            initramfs: c.finish(),
        })
    }

    /// The base image followed by an archive holding `script` as `/test.sh`.
    pub fn initramfs_with(&self, script: &str) -> Vec<u8> {
        self.initramfs_with_binaries(script, &[])
            .expect("no binaries to read")
    }

    /// [`GuestImage::initramfs_with`], the archive also holding each of the host's
    /// programs `binaries` under `/usr/bin/` with its shared libraries (see
    /// [`GuestOptions::host_binaries`]).
    pub fn initramfs_with_binaries(&self, script: &str, binaries: &[PathBuf]) -> Result<Vec<u8>> {
        let mut c = Cpio::new();
        c.file("test.sh", 0o755, script.as_bytes());
        let mut files = BTreeMap::new();
        for bin in binaries {
            let name = bin.file_name().unwrap_or(bin.as_os_str()).to_string_lossy();
            files.extend(host_binary_files(bin, &format!("usr/bin/{name}"))?);
        }
        add_files(&mut c, &files.into_iter().collect());
        let mut v = self.initramfs.clone();
        v.extend_from_slice(&c.finish());
        Ok(v)
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/bin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// An x86-64 ELF without a `PT_INTERP` program header (no dynamic loader needed).
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| {
        b.get(o..o + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
    };
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let u64_at = |o: usize| {
        b.get(o..o + 8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a) as usize
        })
    };
    if !b.starts_with(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).all(|i| u32_at(phoff + i * phentsize) != Some(3))
}

/// One guest NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestNic {
    /// A virtio-net NIC on an existing tap in the namespace.
    Tap {
        ifname: String,
        mac: String,
        mtu: Option<u32>,
    },
    /// Raw QEMU arguments (e.g. `NetworkPlan::qemu_args()`, or a `-netdev stream` pair).
    /// With a `-netdev vhost-user` among them the guest's memory is made shared, unless
    /// they name a `memory-backend` of their own (a plan's shared memory), which then
    /// also sizes the guest's RAM (`GuestOptions::memory_mb` is not passed).
    Args(Vec<String>),
    /// A virtio-net NIC whose back end is the vhost-user server on `socket` (start it
    /// before booting), with `queues` queue pairs; the guest's memory is then a shared
    /// memfd, as vhost-user needs.
    VhostUser {
        socket: PathBuf,
        mac: String,
        queues: u16,
    },
}

impl GuestNic {
    pub fn tap(ifname: &str, mac: &str) -> GuestNic {
        GuestNic::Tap {
            ifname: ifname.to_string(),
            mac: mac.to_string(),
            mtu: None,
        }
    }

    /// A virtio-net NIC connecting to a unix stream socket (the user-mode engine listens;
    /// start it before booting, QEMU 7.2 does not reconnect).
    pub fn stream(socket: &Path, mac: &str) -> GuestNic {
        let id = format!(
            "nbstream{}",
            crate::netns::unique_suffix().replace('-', "x")
        );
        GuestNic::Args(vec![
            "-netdev".into(),
            format!(
                "stream,id={id},server=off,addr.type=unix,addr.path={}",
                socket.display().to_string().replace(',', ",,")
            ),
            "-device".into(),
            format!("virtio-net-pci,netdev={id},mac={mac}"),
        ])
    }

    /// A virtio-net NIC on the vhost-user back end listening on `socket`.
    pub fn vhost_user(socket: &Path, mac: &str) -> GuestNic {
        GuestNic::VhostUser {
            socket: socket.to_path_buf(),
            mac: mac.to_string(),
            queues: 1,
        }
    }

    fn qemu_args(&self, index: usize) -> Vec<String> {
        match self {
            GuestNic::Tap { ifname, mac, mtu } => {
                let id = format!("nbnic{index}");
                let mut dev = format!("virtio-net-pci,netdev={id},mac={mac}");
                if let Some(m) = mtu {
                    dev.push_str(&format!(",host_mtu={m}"));
                }
                vec![
                    "-netdev".into(),
                    format!("tap,id={id},ifname={ifname},script=no,downscript=no"),
                    "-device".into(),
                    dev,
                ]
            }
            GuestNic::Args(a) => a.clone(),
            GuestNic::VhostUser {
                socket,
                mac,
                queues,
            } => {
                let (mut netdev, mut dev) = (
                    format!("vhost-user,id=nbnic{index},chardev=nbvu{index}"),
                    format!("virtio-net-pci,netdev=nbnic{index},mac={mac}"),
                );
                if *queues > 1 {
                    // A vector per queue, one for the control queue and one for config.
                    netdev.push_str(&format!(",queues={queues}"));
                    dev.push_str(&format!(",mq=on,vectors={}", 2 * queues + 2));
                }
                vec![
                    "-chardev".into(),
                    format!(
                        "socket,id=nbvu{index},path={}",
                        socket.display().to_string().replace(',', ",,")
                    ),
                    "-netdev".into(),
                    netdev,
                    "-device".into(),
                    dev,
                ]
            }
        }
    }
}

/// Knobs of a boot beyond NICs and script.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub memory_mb: u32,
    /// Appended to the kernel command line.
    pub append: String,
    /// Extra QEMU arguments.
    pub extra_args: Vec<String>,
    /// Descriptors QEMU inherits, as a launcher passes them: `(fd, path)` — `path` is
    /// opened read-write as descriptor `fd` (3 to 9) in the process that then becomes
    /// QEMU (e.g. a macvtap's `/dev/tap<ifindex>` for `-netdev tap,fd=<fd>`). Done by a
    /// shell redirection (`exec 3<>path`) in front of QEMU: no unsafe code here.
    pub fds: Vec<(u32, PathBuf)>,
    /// A reboot in the guest resets the machine (else QEMU exits: `-no-reboot`).
    pub reboot: bool,
    pub cpus: u32,
    /// Programs of the host to put in the guest as `/usr/bin/<name>`, each with the
    /// shared libraries `ldd` names (e.g. `/usr/bin/iperf3`), in the boot's own archive.
    pub host_binaries: Vec<PathBuf>,
}

impl Default for GuestOptions {
    fn default() -> Self {
        GuestOptions {
            memory_mb: 256,
            append: String::new(),
            extra_args: Vec::new(),
            fds: Vec::new(),
            reboot: false,
            cpus: 1,
            host_binaries: Vec::new(),
        }
    }
}

/// Where the guest's RAM comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuestMemory {
    /// QEMU's own (`-m`).
    Private,
    /// A shared memfd the testbed adds: a vhost-user back end maps it.
    Shared,
    /// The NICs' arguments bring a memory backend (a plan's shared memory).
    FromArgs,
}

fn guest_memory(nics: &[GuestNic]) -> GuestMemory {
    let args = || {
        nics.iter().filter_map(|n| match n {
            GuestNic::Args(a) => Some(a),
            _ => None,
        })
    };
    if args().flatten().any(|a| a.contains("memory-backend=")) {
        return GuestMemory::FromArgs;
    }
    let vhost_user = nics.iter().any(|n| matches!(n, GuestNic::VhostUser { .. }))
        || args().any(|a| {
            a.windows(2)
                .any(|w| w[0] == "-netdev" && w[1].starts_with("vhost-user,"))
        });
    if vhost_user {
        GuestMemory::Shared
    } else {
        GuestMemory::Private
    }
}

/// A running guest. Killed on drop.
#[derive(Debug)]
pub struct Guest {
    process: Process,
    dir: tempfile::TempDir,
    console: PathBuf,
    started: Instant,
    ready_after: Option<Duration>,
}

impl Guest {
    /// Boots a guest inside `netns` with `nics`, running `script` (sh) after boot.
    pub fn boot(netns: &Netns, nics: &[GuestNic], script: &str) -> Result<Guest> {
        Self::boot_with(netns, nics, script, &GuestOptions::default())
    }

    pub fn boot_with(
        netns: &Netns,
        nics: &[GuestNic],
        script: &str,
        opts: &GuestOptions,
    ) -> Result<Guest> {
        let image = GuestImage::get()?;
        let dir = tempfile::Builder::new()
            .prefix("nb-guest-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "create a temp dir for the guest",
                path: std::env::temp_dir(),
                source,
            })?;
        let initrd = dir.path().join("initramfs.cpio");
        let initramfs = image.initramfs_with_binaries(script, &opts.host_binaries)?;
        std::fs::write(&initrd, initramfs).map_err(|source| Error::Io {
            what: "write",
            path: initrd.clone(),
            source,
        })?;
        let console = dir.path().join("console.log");
        let memory = guest_memory(nics);
        let mut argv: Vec<String> =
            vec!["qemu-system-x86_64".into(), "-accel".into(), "tcg".into()];
        if memory != GuestMemory::FromArgs {
            argv.extend(["-m".into(), opts.memory_mb.to_string()]);
        }
        argv.extend([
            "-smp".into(),
            opts.cpus.to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-serial".into(),
            format!("file:{}", console.display()),
            "-kernel".into(),
            image.kernel.display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            format!("console=ttyS0 panic=-1 quiet {}", opts.append)
                .trim()
                .to_string(),
        ]);
        if memory == GuestMemory::Shared {
            // A vhost-user back end maps the guest's memory: it must be shareable.
            argv.extend([
                "-object".into(),
                format!(
                    "memory-backend-memfd,id=nbmem,size={}M,share=on",
                    opts.memory_mb
                ),
                "-machine".into(),
                "memory-backend=nbmem".into(),
            ]);
        }
        if !opts.reboot {
            argv.push("-no-reboot".into());
        }
        for (i, nic) in nics.iter().enumerate() {
            argv.extend(nic.qemu_args(i));
        }
        argv.extend(opts.extra_args.iter().cloned());
        let stderr_path = dir.path().join("qemu.stderr");
        let stderr = std::fs::File::create(&stderr_path).map_err(|source| Error::Io {
            what: "create",
            path: stderr_path,
            source,
        })?;
        let argv = with_inherited_fds(argv, &opts.fds)?;
        let mut c = netns.command(&argv);
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let started = Instant::now();
        let process = netns.spawn_command(c)?;
        Ok(Guest {
            process,
            dir,
            console,
            started,
            ready_after: None,
        })
    }

    /// The console output so far.
    pub fn console(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    /// What QEMU printed on stderr.
    pub fn qemu_stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("qemu.stderr")).unwrap_or_default()
    }

    /// Waits until a console line starts with `marker`; returns the whole console text.
    /// Fails when the timeout passes or QEMU exits first (with the console in the error).
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<String> {
        let begin = Instant::now();
        loop {
            let text = self.console();
            if text.lines().any(|l| l.trim_start().starts_with(marker)) {
                return Ok(text);
            }
            if let Some(status) = self.process.wait_timeout(Duration::ZERO)? {
                let text = self.console();
                if text.lines().any(|l| l.trim_start().starts_with(marker)) {
                    return Ok(text);
                }
                return Err(Error::GuestExited {
                    marker: marker.to_string(),
                    status: status.to_string(),
                    stderr: self.qemu_stderr().trim().to_string(),
                    console: text,
                });
            }
            if begin.elapsed() >= timeout {
                return Err(Error::GuestTimeout {
                    marker: marker.to_string(),
                    waited: timeout,
                    console: text,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for [`GUEST_READY_MARKER`] and returns the time from QEMU's start to it.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        if let Some(d) = self.ready_after {
            return Ok(d);
        }
        self.wait_for(GUEST_READY_MARKER, timeout)?;
        let d = self.started.elapsed();
        self.ready_after = Some(d);
        Ok(d)
    }

    /// Waits for `DONE` (the script finished) and returns the parsed results.
    pub fn wait_done(&mut self, timeout: Duration) -> Result<BTreeMap<String, String>> {
        self.wait_for("DONE", timeout)?;
        Ok(self.results())
    }

    /// `RESULT <key> <value>` lines of the console so far.
    pub fn results(&self) -> BTreeMap<String, String> {
        parse_results(&self.console())
    }

    /// Waits up to `timeout` for QEMU to exit (after `poweroff -f`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<bool> {
        Ok(self.process.wait_timeout(timeout)?.is_some())
    }

    /// Time since QEMU was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

/// `argv` behind `sh -c 'exec 3<>"$1" …; shift N; exec "$@"'`, so that each path is
/// open read-write under its number when `argv` starts (and the pid stays the same: both
/// are `exec`s). The paths are opened inside the namespace `argv` runs in. A path that
/// cannot be opened makes the shell, hence the "guest", exit with the shell's message.
fn with_inherited_fds(argv: Vec<String>, fds: &[(u32, PathBuf)]) -> Result<Vec<String>> {
    if fds.is_empty() {
        return Ok(argv);
    }
    let mut script = String::from("exec");
    let mut seen = std::collections::BTreeSet::new();
    for (i, (fd, _)) in fds.iter().enumerate() {
        if !(3..=9).contains(fd) || !seen.insert(*fd) {
            return Err(Error::Fixture(format!(
                "inherited descriptors must be distinct and within 3..=9 (a shell redirection), got {fd}"
            )));
        }
        script.push_str(&format!(" {fd}<>\"${}\"", i + 1));
    }
    script.push_str(&format!("; shift {}; exec \"$@\"", fds.len()));
    let mut out = vec!["sh".to_string(), "-c".into(), script, "nb-fds".into()];
    out.extend(fds.iter().map(|(_, p)| p.display().to_string()));
    out.extend(argv);
    Ok(out)
}

/// Parses `RESULT <key> <value>` lines; the last value of a key wins.
pub fn parse_results(console: &str) -> BTreeMap<String, String> {
    console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RESULT "))
        .filter_map(|rest| {
            let rest = rest.trim();
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            (!k.is_empty()).then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_become_a_map_and_other_lines_are_ignored() {
        let r = parse_results(
            "boot\r\nRESULT ping ok\nRESULT addr 10.0.0.2/24 x\nnoise RESULT no\nRESULT ping fail\nDONE\n",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r["ping"], "fail");
        assert_eq!(r["addr"], "10.0.0.2/24 x");
    }

    #[test]
    fn the_system_busybox_is_recognised_as_static() {
        let b = std::fs::read("/bin/busybox").expect("busybox-static installed");
        assert!(is_static_elf(&b));
        let dynamic = std::fs::read("/bin/sh").expect("/bin/sh exists");
        assert!(!is_static_elf(&dynamic));
    }

    #[test]
    fn inherited_fds_are_opened_by_a_shell_in_front_of_the_command() {
        let argv = with_inherited_fds(
            vec!["qemu".into(), "-x".into()],
            &[(3, PathBuf::from("/dev/tap7")), (4, PathBuf::from("/a b"))],
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "sh",
                "-c",
                "exec 3<>\"$1\" 4<>\"$2\"; shift 2; exec \"$@\"",
                "nb-fds",
                "/dev/tap7",
                "/a b",
                "qemu",
                "-x"
            ]
        );
        // The shell really hands the descriptor on: fd 3 of the child is the path.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "content").unwrap();
        let argv = with_inherited_fds(vec!["sh".into(), "-c".into(), "cat <&3".into()], &[(3, f)])
            .unwrap();
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "content");
        assert!(with_inherited_fds(vec![], &[(10, PathBuf::from("/x"))]).is_err());
        assert!(with_inherited_fds(vec![], &[(2, PathBuf::from("/x"))]).is_err());
    }

    #[test]
    fn a_stream_nic_names_its_netdev_consistently() {
        let GuestNic::Args(a) = GuestNic::stream(Path::new("/tmp/a,b.sock"), "02:00:00:00:00:01")
        else {
            panic!()
        };
        let id = a[1]
            .split(',')
            .find_map(|kv| kv.strip_prefix("id="))
            .unwrap();
        assert!(a[1].ends_with("addr.path=/tmp/a,,b.sock"));
        assert_eq!(
            a[3],
            format!("virtio-net-pci,netdev={id},mac=02:00:00:00:00:01")
        );
    }

    #[test]
    fn vhost_user_nics_get_shared_memory_once() {
        let args = |a: &[&str]| GuestNic::Args(a.iter().map(|s| s.to_string()).collect());
        let vu = GuestNic::vhost_user(Path::new("/tmp/vu.sock"), "02:00:00:00:00:01");
        assert_eq!(guest_memory(std::slice::from_ref(&vu)), GuestMemory::Shared);
        let plan_vu = args(&[
            "-chardev",
            "socket,id=c,path=/x",
            "-netdev",
            "vhost-user,id=n,chardev=c",
        ]);
        assert_eq!(
            guest_memory(std::slice::from_ref(&plan_vu)),
            GuestMemory::Shared
        );
        let with_memory = args(&[
            "-object",
            "memory-backend-memfd,id=mem,size=256M,share=on",
            "-machine",
            "memory-backend=mem",
            "-netdev",
            "vhost-user,id=n,chardev=c",
        ]);
        assert_eq!(guest_memory(&[vu, with_memory]), GuestMemory::FromArgs);
        let tap = GuestNic::tap("tap0", "02:00:00:00:00:01");
        assert_eq!(guest_memory(&[tap]), GuestMemory::Private);
    }
}
