//! What `apply` and `teardown` hand back: their reports, and [`ApplyError`], which says
//! which step (number, interface, link) or which undo failed, what was rolled back, and
//! what to run next.

use std::time::Duration;

use super::replan::PlanChanges;
use super::step::StepError;
use crate::journal::JournalError;
use crate::link::LinkError;
use crate::ns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    State(#[from] JournalError),
    #[error(
        "{dir} holds the state of a different plan that cannot be carried over (a journal without a layout, written by a netbind before hot-plugging, or a damaged one); run `netbind down` with this state dir first"
    )]
    PlanChanged { dir: String },
    #[error(
        "interface {interface} left the plan or changed: undoing \"{what}\" failed; the journal keeps what is left: fix the cause and run `netbind up` (or `down`) again"
    )]
    Unplug {
        interface: String,
        what: String,
        #[source]
        source: Box<StepError>,
    },
    #[error("reading the pod namespace's links failed; no step of the plan ran")]
    ReadLinks(#[source] LinkError),
    #[error(
        "step {number}/{total} of interface {interface} ({what}) failed{}; rolled back the {rolled_back} change(s) of this run",
        on_link(link)
    )]
    Step {
        number: usize,
        total: usize,
        interface: String,
        what: String,
        link: Option<String>,
        rolled_back: usize,
        #[source]
        source: Box<StepError>,
    },
    #[error(
        "step {number} ({what}) failed: {cause}; rolling back then failed at \"{undo}\" — the journal still lists what is left: run `netbind down`"
    )]
    Rollback {
        number: usize,
        what: String,
        cause: String,
        undo: String,
        #[source]
        source: Box<StepError>,
    },
    #[error(
        "undoing \"{what}\" (step {step}) failed; the journal keeps it and everything before it: fix the cause and run `netbind down` again"
    )]
    Undo {
        step: usize,
        what: String,
        #[source]
        source: Box<StepError>,
    },
}

fn on_link(link: &Option<String>) -> String {
    link.as_ref()
        .map(|l| format!(" on link {l}"))
        .unwrap_or_default()
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub steps: usize,
    /// Steps that changed something in this run.
    pub changed: usize,
    /// Links this run created.
    pub created: Vec<String>,
    /// How the state dir's earlier plan became this one (hot-plug); empty otherwise.
    pub plan_changes: PlanChanges,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// Journal entries undone.
    pub undone: usize,
    /// Whether there was a journal at all.
    pub found: bool,
    pub elapsed: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_error_names_step_interface_link_and_rollback() {
        let e = ApplyError::Step {
            number: 12,
            total: 15,
            interface: "default".into(),
            what: "create tap tap-way-too-long0".into(),
            link: Some("tap-way-too-long0".into()),
            rolled_back: 11,
            source: Box::new(StepError::NotAPort { link: "x".into() }),
        };
        assert_eq!(
            e.to_string(),
            "step 12/15 of interface default (create tap tap-way-too-long0) failed on link tap-way-too-long0; rolled back the 11 change(s) of this run"
        );
    }
}
