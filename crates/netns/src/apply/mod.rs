//! `apply` and `teardown`: the plan's steps, carried out in the pod's namespace, undone
//! exactly.
//!
//! How it works: [`steps`] flattens a plan into numbered steps — per interface, in plan
//! order, its [`LinkStep`](netbind_plan::model::LinkStep)s, then its sysctls, then its nftables ruleset (one step). On a
//! thread that entered the namespace (see `crate::ns::in_netns`), each step is *checked*
//! first: it reads the state the step would change and either finds the step's result
//! already there (nothing to do) or returns the [`Undo`] that would put back what it found.
//! Only then, if something is to change, the undo goes into the journal (atomically, see
//! [`crate::journal`]) and the step *acts*. Link states are read once per run (one dump
//! of the namespace's links) and then kept up to date by the acts themselves
//! (`ctx.rs`): nothing else changes the pod's links while netbind wires them, and
//! asking again costs a round trip per link per step — worse, asking about a link whose
//! carrier just changed makes the kernel settle that change on the spot (an RCU grace
//! period in `rtnl_getlink`) instead of later in the background. An act whose effect on
//! the state is not fully known (a link created, a port enslaved) marks that link for
//! asking again. So:
//! - running `apply` again changes nothing and writes nothing (every check finds its
//!   result);
//! - after a SIGKILL anywhere, the journal names everything changed so far; the next run
//!   keeps the recorded undo of a step it finds in the journal (the state it would read
//!   now is already changed) and converges, because each act is itself check-then-act;
//! - a step that fails makes `apply` undo, newest first, what *this run* recorded, and
//!   report which step failed, on which link and why;
//! - a *different* plan on an existing journal (hot-plug, `state: absent`, new ports): the
//!   journal's layout (per interface and part — links, sysctls, nftables — its step
//!   numbers and a digest) says what the new plan keeps unchanged; [`replan`] keeps those
//!   entries, renumbered, and the entries of dropped or changed parts are undone first
//!   (newest first, each recorded as undone, so a kill half-way is picked up by the next
//!   run); then the new plan runs as usual and the kept parts' checks find their results
//!   in place;
//! - [`teardown`] first deletes every link netbind created in one kernel call (one RCU
//!   grace period instead of one per link), then undoes the other journal entries newest
//!   first, marking each undone in the journal as it goes (so an interrupted `down` can be
//!   run again), then removes the state dir.
//!
//! Apply never decides: names, addresses, MACs and rules all come from the plan. The one
//! adaptation is mechanical: on a kernel without the `dummy` driver the placeholder link
//! is an `ifb` (reported in [`ApplyReport::notes`]).
//!
//! Capabilities: CAP_SYS_ADMIN (to `setns`) and CAP_NET_ADMIN (links, sysctls, nftables).
//!
//! Test hooks ([`ApplyOptions`], read by the CLI from `NETBIND_FAIL_AFTER_STEP` /
//! `NETBIND_KILL_AFTER_STEP`): after step N, fail (and roll back) or SIGKILL the process;
//! `NETBIND_KILL_AFTER_UNPLUG`: SIGKILL after the N-th undo of a hot-unplug.
//!
//! Where things are: this file holds the entry points ([`apply()`], [`apply_with`],
//! [`teardown`]) and the unplugging of a replan; `step.rs` the steps and [`StepError`];
//! `run.rs` the interpreter (check, record, act, roll back); `ctx.rs` what a check and an
//! act see (the namespace, the run's picture of its links); `replan.rs` the hot-plug
//! diffing (layout, fingerprint, carry-over); `report.rs` the reports and
//! [`ApplyError`]; `options.rs` the test hooks. Per family of step kinds, its checks, acts
//! and undos side by side: `new_links.rs` (bridge, tap, placeholder), `link_state.rs` (up,
//! down, rename, MAC, MTU), `addresses.rs` (flush, add), `ports.rs` (master, learning),
//! `sysctls.rs`, `nftables.rs`; `dispatch.rs` maps each step kind and each undo to its
//! family, the one list of all kinds. Imports run one way: entry points → interpreter →
//! dispatch → families → `ctx`/`step`.

mod addresses;
mod ctx;
mod dispatch;
mod link_state;
mod new_links;
mod nftables;
mod options;
mod ports;
mod replan;
mod report;
mod run;
mod step;
mod sysctls;

pub use options::{ApplyOptions, FAIL_AFTER_STEP, KILL_AFTER_STEP, KILL_AFTER_UNPLUG};
pub use replan::{PlanChanges, Replan, carry_over, fingerprint, layout, replan};
pub use report::{ApplyError, ApplyReport, TeardownReport};
pub use step::{Step, StepError, StepKind, steps};

use std::time::Instant;

use netbind_plan::NetworkPlan;

use crate::journal::{Journal, Record, StateDir, Undo, VERSION};
use crate::link::LinkError;
use crate::ns::{Ns, in_netns};
use options::kill_self;
use run::Run;

/// Applies `plan` in the namespace `netns`, recording in `state_dir`.
pub fn apply(
    plan: &NetworkPlan,
    netns: &str,
    state_dir: &std::path::Path,
) -> Result<ApplyReport, ApplyError> {
    apply_with(plan, netns, state_dir, &ApplyOptions::default())
}

pub fn apply_with(
    plan: &NetworkPlan,
    netns: &str,
    state_dir: &std::path::Path,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let started = Instant::now();
    let state = StateDir::new(state_dir);
    state.create()?;
    let _turn = state.lock()?;
    let layout = layout(plan);
    let fresh = Journal {
        version: VERSION,
        plan: fingerprint(&layout),
        object: plan.object.clone(),
        netns: netns.to_string(),
        complete: false,
        entries: Vec::new(),
        layout,
    };
    let (journal, replanned) =
        carry_over(state.journal()?, &fresh, plan).ok_or_else(|| ApplyError::PlanChanged {
            dir: state_dir.display().to_string(),
        })?;
    // Compact (or create) the file — the found journal as it is, when it carries over to a
    // new plan: a torn last line must not end up amid the records appended from here on.
    state.compact(&journal)?;
    let mut report = in_netns(netns, |ns| {
        let mut report = ApplyReport::default();
        let journal = match replanned {
            None => journal,
            Some(r) => {
                unplug(ns, &state, &r, options)?;
                let j = Journal {
                    entries: r.keep,
                    ..fresh
                };
                state.store(&j)?;
                report.plan_changes = r.changes;
                j
            }
        };
        Run::new(ns, &state, journal, report)?.all(plan, options)
    })??;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Undoes the entries of the interfaces a new plan drops or changes, newest first,
/// recording each as undone (under its old number: the header is still the old plan's, so
/// an `up` killed half-way through finds the rest and goes on). A link that is already
/// gone went with its network (Multus removes a hot-unplugged network's link): nothing
/// is left to undo on it.
fn unplug(ns: &Ns, state: &StateDir, r: &Replan, options: &ApplyOptions) -> Result<(), ApplyError> {
    for (n, entry) in r.undo.iter().rev().enumerate() {
        match dispatch::undo(ns, &entry.undo) {
            Ok(()) | Err(StepError::Link(LinkError::NotFound { .. })) => {}
            Err(source) => {
                return Err(ApplyError::Unplug {
                    interface: entry.interface.clone(),
                    what: entry.what.clone(),
                    source: Box::new(source),
                });
            }
        }
        state.append(&Record::Undone(entry.step))?;
        tracing::info!(
            step = entry.step, interface = %entry.interface, what = %entry.what,
            "undid step {} ({}): {}", entry.step, entry.interface, entry.what
        );
        if options.kill_after_unplug == Some(n + 1) {
            kill_self();
        }
    }
    Ok(())
}

/// Undoes everything the journal in `state_dir` lists, newest first, then removes the
/// state dir. No journal: nothing to do.
pub fn teardown(netns: &str, state_dir: &std::path::Path) -> Result<TeardownReport, ApplyError> {
    let started = Instant::now();
    let state = StateDir::new(state_dir);
    let _turn = state.dir.exists().then(|| state.lock()).transpose()?;
    let Some(mut journal) = state.journal()? else {
        state.remove()?;
        return Ok(TeardownReport {
            elapsed: started.elapsed(),
            ..TeardownReport::default()
        });
    };
    // A torn last line must not end up amid the `undone` records appended below.
    state.compact(&journal)?;
    let undone = in_netns(netns, |ns| {
        // Phase 1: every link netbind created goes at once (see `Links::delete_many`).
        // Whatever else the journal says about those links becomes moot: undoing it finds
        // no link and does nothing. Names are safe here: plans never rename a link they
        // create, and the pod links netbind renamed are not in this list.
        let created: Vec<(usize, String, String)> = journal
            .entries
            .iter()
            .filter_map(|e| match &e.undo {
                Undo::DeleteLink { link, kind } => Some((e.step, link.clone(), kind.clone())),
                _ => None,
            })
            .collect();
        let mut ours = Vec::new();
        for (_, link, kind) in &created {
            if let Some(s) = ns
                .block_on(ns.links.state(link))
                .map_err(|e| undo_failed(&journal, link, e.into()))?
            {
                let found = s.kind.as_deref().unwrap_or_default();
                if new_links::same_kind(found, kind) {
                    ours.push(link.clone());
                }
            }
        }
        ns.block_on(ns.links.delete_many(&ours))
            .map_err(|e| undo_failed(&journal, "created links", e.into()))?;
        let mut n = 0;
        for (step, _, _) in &created {
            journal.entries.retain(|e| e.step != *step);
            state.append(&Record::Undone(*step))?;
            n += 1;
        }
        // Phase 2: the rest, newest first.
        while let Some(entry) = journal.entries.last().cloned() {
            dispatch::undo(ns, &entry.undo).map_err(|source| ApplyError::Undo {
                step: entry.step,
                what: entry.what.clone(),
                source: Box::new(source),
            })?;
            journal.entries.pop();
            state.append(&Record::Undone(entry.step))?;
            tracing::debug!(
                step = entry.step, what = %entry.what,
                "undid step {}: {}", entry.step, entry.what
            );
            n += 1;
        }
        Ok::<_, ApplyError>(n)
    })??;
    state.remove()?;
    Ok(TeardownReport {
        undone,
        found: true,
        elapsed: started.elapsed(),
    })
}

fn undo_failed(journal: &Journal, what: &str, source: StepError) -> ApplyError {
    ApplyError::Undo {
        step: journal.entries.last().map(|e| e.step).unwrap_or(0),
        what: format!("delete {what}"),
        source: Box::new(source),
    }
}
