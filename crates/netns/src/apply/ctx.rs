//! What a step's check and act see: the namespace (its netlink connection) and the run's
//! picture of the namespace's links, plus what the acts report (links created, notes).
//!
//! The picture starts from one dump of all links ([`Ctx::new`]) and is kept true by the
//! acts themselves ([`Ctx::changed`]): nothing else changes the pod's links while netbind
//! wires them, and asking again costs a round trip per link per step — worse, asking
//! about a link whose carrier just changed makes the kernel settle that change on the
//! spot (an RCU grace period in `rtnl_getlink`) instead of later in the background. An
//! act whose effect on a link is not fully known (a link created, a port enslaved)
//! [`Ctx::forget`]s that link, and the next look asks the kernel. A name not in the
//! picture is absent. Undo does not use the picture: it runs on its own (rollback,
//! unplug, `down`) and asks the kernel every time.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::journal::Undo;
use crate::link::{LinkError, LinkState};
use crate::ns::Ns;

use super::step::StepError;

/// What a check found.
pub(super) enum Check {
    /// The step's result is already there.
    Done,
    /// Something to do; the undo of what is there now.
    Act(Undo),
}

/// What a run knows of one link name.
#[derive(Clone)]
pub(super) enum Known {
    Link(LinkState),
    Absent,
    /// Changed by this run in ways not all known here: ask the kernel.
    Ask,
}

pub(super) struct Ctx<'a> {
    pub(super) ns: &'a Ns,
    /// The links as this run last read them or made them; a name not in the map is
    /// absent (the run starts from a dump of all links).
    known: RefCell<HashMap<String, Known>>,
    /// Links this run created.
    pub(super) created: Vec<String>,
    pub(super) notes: Vec<String>,
}

impl<'a> Ctx<'a> {
    /// Starts from one dump of the namespace's links.
    pub(super) fn new(ns: &'a Ns) -> Result<Ctx<'a>, LinkError> {
        let all = ns.block_on(ns.links.all())?;
        let known = all
            .into_iter()
            .map(|s| (s.name.clone(), Known::Link(s)))
            .collect();
        Ok(Ctx {
            ns,
            known: RefCell::new(known),
            created: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// The link as this run last saw it, else as the kernel has it now.
    pub(super) fn link(&self, name: &str) -> Result<Option<LinkState>, StepError> {
        match self.known.borrow().get(name).unwrap_or(&Known::Absent) {
            Known::Link(s) => return Ok(Some(s.clone())),
            Known::Absent => return Ok(None),
            Known::Ask => {}
        }
        let state = self.ns.block_on(self.ns.links.state(name))?;
        self.known.borrow_mut().insert(
            name.to_string(),
            state.clone().map_or(Known::Absent, Known::Link),
        );
        Ok(state)
    }

    /// An act changed `name` as `change` says.
    pub(super) fn changed(&self, name: &str, change: impl FnOnce(&mut LinkState)) {
        if let Some(Known::Link(s)) = self.known.borrow_mut().get_mut(name) {
            change(s);
        }
    }

    /// An act changed `name` in ways not all known here: the next step asks the kernel.
    pub(super) fn forget(&self, name: &str) {
        self.known.borrow_mut().insert(name.to_string(), Known::Ask);
    }

    /// An act renamed `from` (now `state`) to `state.name`.
    pub(super) fn renamed(&self, from: &str, state: LinkState) {
        let mut known = self.known.borrow_mut();
        known.insert(from.to_string(), Known::Absent);
        known.insert(state.name.clone(), Known::Link(state));
    }

    pub(super) fn require(&self, name: &str) -> Result<LinkState, StepError> {
        self.link(name)?.ok_or_else(|| {
            StepError::Link(LinkError::NotFound {
                link: name.to_string(),
            })
        })
    }
}
