//! The interpreter: one run of a plan's steps in the namespace, each checked, recorded,
//! then acted on, and rolled back on failure.
//!
//! Per step ([`Run::one`]): the check ([`dispatch::check`]) reads the state the step would
//! change and finds the step's result already there (nothing to do) or returns the undo
//! that would put back what it found; only then, if something is to change, the undo goes
//! into the journal (appended atomically) and the step acts. A step the journal already
//! has keeps its recorded undo (what it would read now is already changed). A link that
//! is gone because a later step of the plan already renamed it means the step ran before
//! that rename did (a re-run after a kill in between): done. A step that fails makes the
//! run undo, newest first, what *this run* recorded, and report which step failed, on
//! which link and why ([`ApplyError::Step`]); when nothing is left in the journal the
//! state dir goes too. Every step that changed something is a log event (debug on a
//! fresh build, info when the run changes what was built: a hot-plug).

use netbind_plan::NetworkPlan;
use netbind_plan::model::LinkStep;

use super::ctx::{Check, Ctx};
use super::dispatch;
use super::options::{ApplyOptions, kill_self};
use super::report::{ApplyError, ApplyReport};
use super::step::{Step, StepError, StepKind, steps};
use crate::journal::{Entry, Journal, Record, StateDir};
use crate::link::LinkError;
use crate::ns::Ns;

pub(super) struct Run<'a> {
    pub(super) ctx: Ctx<'a>,
    pub(super) state: &'a StateDir,
    pub(super) journal: Journal,
    pub(super) report: ApplyReport,
    /// Indices (in `journal.entries`) of entries this run added, oldest first.
    new_entries: Vec<usize>,
    /// The journal had entries when the run began: a hot-plug, a changed plan or a run
    /// after a kill. Its changes are logged as info events, a fresh build's as debug.
    on_built: bool,
}

impl<'a> Run<'a> {
    /// A run on `journal`, starting from one dump of the namespace's links.
    pub(super) fn new(
        ns: &'a Ns,
        state: &'a StateDir,
        journal: Journal,
        report: ApplyReport,
    ) -> Result<Run<'a>, ApplyError> {
        let ctx = Ctx::new(ns).map_err(ApplyError::ReadLinks)?;
        Ok(Run {
            ctx,
            state,
            on_built: !journal.entries.is_empty(),
            journal,
            report,
            new_entries: Vec::new(),
        })
    }

    /// Every step of `plan`, in order; then the journal is marked complete.
    pub(super) fn all(
        mut self,
        plan: &NetworkPlan,
        options: &ApplyOptions,
    ) -> Result<ApplyReport, ApplyError> {
        let steps = steps(plan);
        let total = steps.len();
        self.report.steps = total;
        for step in &steps {
            let result = self.one(step, &steps).and_then(|()| {
                if options.fail_after_step == Some(step.number) {
                    Err(StepError::Injected { after: step.number })
                } else {
                    Ok(())
                }
            });
            if let Err(source) = result {
                return Err(self.roll_back(step, total, source));
            }
            if options.kill_after_step == Some(step.number) {
                kill_self();
            }
        }
        if !self.journal.complete {
            self.journal.complete = true;
            self.state.append(&Record::Complete)?;
        }
        let mut report = self.report;
        report.created = self.ctx.created;
        report.notes.extend(self.ctx.notes);
        Ok(report)
    }

    fn roll_back(&mut self, step: &Step<'_>, total: usize, source: StepError) -> ApplyError {
        let mut rolled_back = 0;
        while let Some(i) = self.new_entries.pop() {
            let entry = self.journal.entries[i].clone();
            if let Err(e) = dispatch::undo(self.ctx.ns, &entry.undo) {
                return ApplyError::Rollback {
                    number: step.number,
                    what: step.describe(),
                    cause: source.to_string(),
                    undo: entry.what,
                    source: Box::new(e),
                };
            }
            self.journal.entries.remove(i);
            rolled_back += 1;
            if let Err(e) = self.store_after_rollback(entry.step) {
                return e;
            }
        }
        ApplyError::Step {
            number: step.number,
            total,
            interface: step.interface.to_string(),
            what: step.describe(),
            link: step.link().map(str::to_string),
            rolled_back,
            source: Box::new(source),
        }
    }

    fn store_after_rollback(&mut self, step: usize) -> Result<(), ApplyError> {
        if self.journal.entries.is_empty() {
            self.state.remove()?;
            Ok(())
        } else {
            Ok(self.state.append(&Record::Undone(step))?)
        }
    }

    /// Check, record, act.
    fn one(&mut self, step: &Step<'_>, all: &[Step<'_>]) -> Result<(), StepError> {
        let recorded = self
            .journal
            .entries
            .iter()
            .position(|e| e.step == step.number);
        let undo = recorded.map(|i| &self.journal.entries[i].undo);
        let check = match dispatch::check(&self.ctx, step.kind, undo) {
            // The link is gone because a later step of the plan already renamed it: this
            // step ran before that rename did (a re-run after a kill in between).
            Err(StepError::Link(LinkError::NotFound { link })) => {
                match renamed_later(all, step.number, &link) {
                    Some(to) if self.ctx.link(to)?.is_some() => Check::Done,
                    _ => return Err(StepError::Link(LinkError::NotFound { link })),
                }
            }
            other => other?,
        };
        match check {
            Check::Done => return Ok(()),
            Check::Act(undo) if recorded.is_none() => {
                let entry = Entry {
                    step: step.number,
                    interface: step.interface.to_string(),
                    what: step.describe(),
                    undo,
                };
                self.state.append(&Record::Entry(entry.clone()))?;
                self.journal.entries.push(entry);
                self.new_entries.push(self.journal.entries.len() - 1);
                self.journal.complete = false;
            }
            Check::Act(_) => {}
        }
        self.report.changed += 1;
        dispatch::act(&mut self.ctx, step.kind)?;
        let (n, interface, what) = (step.number, step.interface, step.describe());
        if self.on_built {
            tracing::info!(step = n, %interface, %what, "step {n} ({interface}): {what}");
        } else {
            tracing::debug!(step = n, %interface, %what, "step {n} ({interface}): {what}");
        }
        Ok(())
    }
}

/// The name a later `RenameLink` of the plan gives `link`, if any.
fn renamed_later<'a>(all: &[Step<'a>], after: usize, link: &str) -> Option<&'a str> {
    all.iter()
        .filter(|s| s.number > after)
        .find_map(|s| match s.kind {
            StepKind::Link(LinkStep::RenameLink { from, to }) if from == link => Some(to.as_str()),
            _ => None,
        })
}
