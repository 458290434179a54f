//! Sysctl steps: a key set to a value in the namespace ([`Undo::Sysctl`]: the value read
//! before). Check compares with the value as written (trimmed); undo writes the old value
//! back only when it differs, and a key whose device is gone (deleted with its link) has
//! nothing to put back. A `net.bridge.…` key that does not exist (br_netfilter is not
//! loaded on the node, so bridged frames never reach netfilter) counts as done: the plan
//! sets those keys only to keep bridged frames out of the pod's netfilter hooks.

use netbind_plan::model::Sysctl;

use super::ctx::Check;
use super::step::StepError;
use crate::journal::Undo;
use crate::sysctl::{self, SysctlError};

pub(super) fn check(s: &Sysctl) -> Result<Check, StepError> {
    let now = match sysctl::read(&s.key) {
        Err(SysctlError::Read { source, .. })
            if s.key.starts_with("net.bridge.")
                && source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(Check::Done);
        }
        other => other?,
    };
    Ok(if now == s.value.trim() {
        Check::Done
    } else {
        Check::Act(Undo::Sysctl {
            key: s.key.clone(),
            value: now,
        })
    })
}

pub(super) fn act(s: &Sysctl) -> Result<(), StepError> {
    Ok(sysctl::write(&s.key, &s.value)?)
}

pub(super) fn undo(key: &str, value: &str) -> Result<(), StepError> {
    match sysctl::read(key) {
        Ok(now) if now != *value => sysctl::write(key, value)?,
        Ok(_) => {}
        // The device the key belongs to is gone (deleted with its link): nothing to put back.
        Err(SysctlError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
