//! Subprocess helpers: run a command, check its status, name it in errors.

use std::path::Path;
use std::process::{Command, Output};

use crate::{Error, Result};

/// `program arg arg…` for error messages.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion and returns its output, whatever its exit status.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output().map_err(|source| Error::Spawn {
        command: display(cmd),
        source,
    })
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying its stderr.
pub fn checked(cmd: &mut Command) -> Result<Output> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(Error::CommandFailed {
            command: display(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// The effective uid, read from `/proc/self/status` (no libc call needed).
pub fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// Where to get each tool the test bed uses.
fn install_hint(tool: &str) -> &'static str {
    let base = tool.rsplit('/').next().unwrap_or(tool);
    match base {
        "ip" => "apt-get install -y iproute2 (or run scripts/install-deps.sh)",
        "nft" => "apt-get install -y nftables (or run scripts/install-deps.sh)",
        "qemu-system-x86_64" => {
            "apt-get install -y qemu-system-x86 (or run scripts/install-deps.sh)"
        }
        "busybox" => "apt-get install -y busybox-static (or run scripts/install-deps.sh)",
        "bridge" | "host-local" | "macvlan" | "vlan" | "ptp" => {
            "apt-get install -y containernetworking-plugins (or run scripts/install-deps.sh)"
        }
        "iperf3" | "pasta" | "passt" | "slirp4netns" => "run scripts/install-deps.sh",
        _ => "run scripts/install-deps.sh",
    }
}

/// Whether `tool` can be run: an existing absolute path, or a name found on `PATH`.
pub fn require_tool(tool: &str) -> Result<()> {
    let found = if tool.starts_with('/') {
        Path::new(tool).is_file()
    } else {
        std::env::var_os("PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .chain(["/usr/sbin".into(), "/sbin".into()])
                    .any(|dir| dir.join(tool).is_file())
            })
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(Error::ToolMissing {
            tool: tool.to_string(),
            hint: install_hint(tool).to_string(),
        })
    }
}
