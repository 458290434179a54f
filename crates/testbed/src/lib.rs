//! netbind's test bed (dev-only): network namespaces, Debian's real CNI plugins and QEMU
//! guests, for privileged and end-to-end tests.
//!
//! # Theory of operation
//!
//! - **Namespaces** ([`Netns`]): every namespace is created by `ip netns add` under a name
//!   unique to this process (`nb-<tag>-<pid>-<n>`) and deleted by its guard's `Drop`, which
//!   first kills every process still inside it (only our tests put processes there) so the
//!   namespace really goes away. Commands run inside with `ip netns exec`.
//! - **Snapshots** ([`Snapshot`]): [`Netns::snapshot`] records a namespace's links,
//!   addresses, routes, nftables ruleset and the sysctls netbind may write as text with
//!   everything that changes by itself or records history (timers, lifetimes, counters,
//!   `tentative`, ifindexes, route order) masked, so that "`down` restored what CNI made"
//!   is plain equality; [`Snapshot::with_tap_macs_masked`] also masks the random MACs of
//!   taps, for comparing two builds of one plan.
//! - **CNI** ([`Cni`]): plugins from `/usr/lib/cni` are called exactly as kubelet and Multus
//!   call them (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH`, the
//!   network configuration on stdin, the result JSON on stdout), but the plugin process
//!   itself runs inside a test-owned *node* namespace. So the cluster bridge, its gateway
//!   address, host-side veths, macvlan masters and forwarding sysctls all live in that node
//!   namespace, never in the machine's own. Each [`CniAttachment`] calls `DEL` on drop.
//! - **Pods** ([`PodFixture`]): a node namespace, a pod namespace whose `eth0` comes from
//!   `bridge` + `host-local` (dual stack, gateway on the node bridge), a peer namespace on
//!   the same bridge, and Multus-style secondary networks (`bridge`, optionally with a VLAN,
//!   or `macvlan`) attached under KubeVirt's hashed pod link names, each with its own peer;
//!   [`PodFixture::add_macvtap`] adds a network as KubeVirt's macvtap binding plugin gets
//!   it (a macvtap on a node-side master, moved into the pod as the pod link).
//!   Fixtures never see each other: every fixture has its own node namespace and its own
//!   host-local data directory, so their (deterministic) subnets may repeat freely and tests
//!   run in parallel threads. Drop order is attachments (CNI DEL), then namespaces.
//! - **Guests** ([`Guest`]): Debian's kernel (fetched, not installed, by
//!   `scripts/fetch-guest-kernel.sh`) with an initramfs written here in memory as a `newc`
//!   cpio archive: static busybox and its applet links, the virtio-net module chain,
//!   `/init` and a udhcpc hook. Each boot appends a second small archive holding `/test.sh`
//!   (the kernel unpacks concatenated archives in order). `/init` loads the modules, prints
//!   `NETBIND-GUEST-UP`, runs the script, prints `DONE` and powers off. QEMU runs with TCG
//!   (nested KVM hangs) inside the given namespace; the serial console goes to a file that
//!   [`Guest::wait_for`] polls. Scripts report with lines `RESULT <key> <value>`. QEMU can
//!   inherit descriptors ([`GuestOptions::fds`], e.g. a macvtap's `/dev/tap<ifindex>` for
//!   `-netdev tap,fd=N`), opened by a shell redirection in front of it.
//!
//! - **libvirt** ([`libvirt::Libvirtd`]): a libvirt daemon of the test's own inside a
//!   pod namespace, with private state directories (a mount namespace of its own), for
//!   the tests where libvirt starts netbind as its `passt`.
//!
//! - **Lossy links** ([`lossy::LossyLink`]): a user-space Ethernet link between two
//!   ends (taps, or the engine's stream socket) that drops, reorders and duplicates
//!   frames as a seeded generator picks, for the tests of recovery from loss.
//!
//! What holds: nothing this crate creates outlives its guard (namespaces, CNI attachments,
//! processes, temp dirs), even when a test panics; nothing touches the machine's own links,
//! routes or rulesets; a test that cannot run (not root, a tool missing) gets an error
//! naming what to install, never a silent skip.

#![forbid(unsafe_code)]

pub mod agent;
mod cmd;
mod cni;
mod cpio;
mod guest;
pub mod libvirt;
pub mod lossy;
mod netns;
mod pod;
pub mod qmp;

use std::path::PathBuf;

pub use cni::{CNI_PATH, Cni, CniAttachment, CniDns, CniInterface, CniIp, CniResult, CniRoute};
pub use guest::{GUEST_READY_MARKER, Guest, GuestImage, GuestNic, GuestOptions, parse_results};
pub use netns::{Netns, Process, SYSCTLS, Snapshot, enter};
pub use pod::{
    CLUSTER_NETWORK, MacvtapNet, PodFixture, PodFixtureBuilder, Secondary, SecondaryKind,
    SecondaryNet, kernel_supports_bridge_vlans,
};

/// Everything that can fail in the test bed. Its `Debug` is the message and its causes, so
/// that a test's `unwrap`/`expect` says what to fix (run as root, what to install).
#[derive(thiserror::Error)]
pub enum Error {
    #[error("the privileged test bed needs root (effective uid is {euid}); run the tests as root")]
    NotRoot { euid: u32 },
    #[error("{tool} is missing; {hint}")]
    ToolMissing { tool: String, hint: String },
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Cni(Box<CniFailure>),
    #[error("CNI plugin `{plugin}` printed something that is not a CNI result: {stdout}")]
    CniResult {
        plugin: String,
        stdout: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the guest kernel is not available: {detail}; run scripts/fetch-guest-kernel.sh as root (needs apt and network)"
    )]
    GuestKernel { detail: String },
    #[error("the guest did not print {marker:?} within {waited:?}; console so far:\n{console}")]
    GuestTimeout {
        marker: String,
        waited: std::time::Duration,
        console: String,
    },
    #[error(
        "the guest exited ({status}) before printing {marker:?}; qemu said: {stderr}\nconsole:\n{console}"
    )]
    GuestExited {
        marker: String,
        status: String,
        stderr: String,
        console: String,
    },
    #[error("{what} is not supported by this machine's kernel ({kernel}); {hint}")]
    KernelUnsupported {
        what: String,
        kernel: String,
        hint: String,
    },
    #[error("{0}")]
    Fixture(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A CNI plugin's error answer (boxed in [`Error::Cni`]: it is large).
#[derive(Debug, thiserror::Error)]
#[error(
    "CNI {command} of plugin `{plugin}` for {ifname} in {netns} failed (code {code}): {msg} {details}"
)]
pub struct CniFailure {
    pub command: String,
    pub plugin: String,
    pub ifname: String,
    pub netns: String,
    pub code: i64,
    pub msg: String,
    pub details: String,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Fails unless the process runs as root and every tool in `tools` is on `PATH` (or is
/// an absolute path that exists). Privileged tests call this first so that they fail loudly.
pub fn require_privileges(tools: &[&str]) -> Result<()> {
    let euid = cmd::effective_uid();
    if euid != 0 {
        return Err(Error::NotRoot { euid });
    }
    for tool in tools {
        cmd::require_tool(tool)?;
    }
    Ok(())
}

/// Runs `args[0]` with the rest as arguments and returns its output; panics with the
/// command and its output when it cannot run or fails. For test set-up steps that must
/// not fail quietly.
pub fn run_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `now()` once it equals `want`, or after 3 s whatever it is then. Carrier, bridge port
/// states and IPv6 link-local addresses follow a link change asynchronously, so a
/// snapshot taken at once can catch them in flight; callers still assert equality.
pub fn settles<T: PartialEq>(want: &T, mut now: impl FnMut() -> T) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let got = now();
        if got == *want || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
