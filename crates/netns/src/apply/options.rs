//! Test hooks of `apply` ([`ApplyOptions`], read by the CLI from the environment): after
//! step N, fail (and roll back) or SIGKILL the process; SIGKILL after the N-th undo of a
//! hot-unplug. Unset or unparsable means off.

/// Environment variable: fail (and roll back) right after step N.
pub const FAIL_AFTER_STEP: &str = "NETBIND_FAIL_AFTER_STEP";
/// Environment variable: SIGKILL the process right after step N.
pub const KILL_AFTER_STEP: &str = "NETBIND_KILL_AFTER_STEP";
/// Environment variable: SIGKILL the process right after the N-th undo of a hot-unplug.
pub const KILL_AFTER_UNPLUG: &str = "NETBIND_KILL_AFTER_UNPLUG";

/// Test hooks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    pub fail_after_step: Option<usize>,
    pub kill_after_step: Option<usize>,
    /// SIGKILL after the N-th undo of a hot-unplug.
    pub kill_after_unplug: Option<usize>,
}

impl ApplyOptions {
    /// From [`FAIL_AFTER_STEP`], [`KILL_AFTER_STEP`] and [`KILL_AFTER_UNPLUG`]; unset or
    /// unparsable means off.
    pub fn from_env() -> ApplyOptions {
        let get = |k| std::env::var(k).ok().and_then(|v| v.trim().parse().ok());
        ApplyOptions {
            fail_after_step: get(FAIL_AFTER_STEP),
            kill_after_step: get(KILL_AFTER_STEP),
            kill_after_unplug: get(KILL_AFTER_UNPLUG),
        }
    }
}

pub(super) fn kill_self() {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
}
