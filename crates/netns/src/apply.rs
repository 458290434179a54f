//! `apply` and `teardown`: the plan's steps, carried out in the pod's namespace, undone
//! exactly.
//!
//! How it works: [`steps`] flattens a plan into numbered steps — per interface, in plan
//! order, its [`LinkStep`]s, then its sysctls, then its nftables ruleset (one step). On a
//! thread that entered the namespace (see [`crate::in_netns`]), each step is *checked*
//! first: it reads the state the step would change and either finds the step's result
//! already there (nothing to do) or returns the [`Undo`] that would put back what it found.
//! Only then, if something is to change, the undo goes into the journal (atomically, see
//! [`crate::journal`]) and the step *acts*. Link states are read once per run (one dump
//! of the namespace's links) and then kept up to date by the acts themselves
//! (`Run::known`): nothing else changes the pod's links while netbind wires them, and
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

use std::time::{Duration, Instant};

use netbind_plan::NetworkPlan;
use netbind_plan::model::InterfacePlan;
use netbind_plan::model::{LinkStep, Sysctl};
use netbind_plan::nftables::NftRuleset;
use sha2::{Digest, Sha256};

use crate::journal::{Entry, Journal, JournalError, Part, Record, Span, StateDir, Undo, VERSION};
use crate::link::{LinkError, LinkState};
use crate::nft::{Nft, NftError};
use crate::sys::TapError;
use crate::sysctl::{self, SysctlError};
use crate::{NetnsError, Ns};

/// Environment variable: fail (and roll back) right after step N.
pub const FAIL_AFTER_STEP: &str = "NETBIND_FAIL_AFTER_STEP";
/// Environment variable: SIGKILL the process right after step N.
pub const KILL_AFTER_STEP: &str = "NETBIND_KILL_AFTER_STEP";
/// Environment variable: SIGKILL the process right after the N-th undo of a hot-unplug.
pub const KILL_AFTER_UNPLUG: &str = "NETBIND_KILL_AFTER_UNPLUG";

/// What went wrong in one step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(
        "link {link} already exists ({kind}) and netbind did not create it; remove it or pick another pod"
    )]
    Exists { link: String, kind: String },
    #[error("link {link} is not a bridge port (set its master first)")]
    NotAPort { link: String },
    #[error("failure injected after step {after} ({FAIL_AFTER_STEP})")]
    Injected { after: usize },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

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

fn kill_self() {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
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

/// One step of a plan.
#[derive(Debug, Clone, Copy)]
pub enum StepKind<'a> {
    Link(&'a LinkStep),
    Sysctl(&'a Sysctl),
    Nft(&'a NftRuleset),
}

#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// 1-based.
    pub number: usize,
    pub interface: &'a str,
    pub kind: StepKind<'a>,
}

/// The plan's steps in the order `apply` runs them.
pub fn steps(plan: &NetworkPlan) -> Vec<Step<'_>> {
    plan.interfaces
        .iter()
        .flat_map(|iface| kinds(iface).map(move |kind| (iface.name.as_str(), kind)))
        .enumerate()
        .map(|(i, (interface, kind))| Step {
            number: i + 1,
            interface,
            kind,
        })
        .collect()
}

/// One interface's steps: its link steps, then its sysctls, then its nftables ruleset.
fn kinds(iface: &InterfacePlan) -> impl Iterator<Item = StepKind<'_>> {
    let links = iface.links.iter().map(StepKind::Link);
    let sysctls = iface.sysctls.iter().map(StepKind::Sysctl);
    let nft = iface.nftables.as_ref().filter(|n| !n.is_empty());
    links.chain(sysctls).chain(nft.map(StepKind::Nft))
}

impl Step<'_> {
    /// The step in words: `create bridge k6t-eth0`, `set eth0 down`…
    pub fn describe(&self) -> String {
        match self.kind {
            StepKind::Link(l) => l.to_string(),
            StepKind::Sysctl(s) => format!("sysctl {}={}", s.key, s.value),
            StepKind::Nft(n) => format!("load nftables ({})", n.summary()),
        }
    }

    /// The link the step works on, if any.
    pub fn link(&self) -> Option<&str> {
        match self.kind {
            StepKind::Link(l) => Some(l.link()),
            StepKind::Sysctl(_) | StepKind::Nft(_) => None,
        }
    }
}

/// Ties a journal to the plan that wrote it: a digest of the plan's [`layout`], so of
/// everything that reaches the namespace and nothing else (a plan that changes only, say,
/// a DHCP option applies as the same plan).
pub fn fingerprint(layout: &[Span]) -> String {
    sha256_json(&layout)
}

/// The fingerprint netbind wrote before journals had a layout: the digest of the whole plan.
fn legacy_fingerprint(plan: &NetworkPlan) -> String {
    sha256_json(plan)
}

/// How a run starts from what the state dir holds: the journal to go on with (a new one,
/// or the one found), and, when the plan changed, how the found one carries over. The
/// same plan under either fingerprint goes on with the found journal, which learns the
/// layout (a journal of a netbind before hot-plugging).
pub fn carry_over(
    found: Option<Journal>,
    fresh: &Journal,
    plan: &NetworkPlan,
) -> Option<(Journal, Option<Replan>)> {
    let Some(j) = found else {
        return Some((fresh.clone(), None));
    };
    let same = j.plan == fresh.plan || (j.layout.is_empty() && j.plan == legacy_fingerprint(plan));
    if same {
        let j = Journal {
            plan: fresh.plan.clone(),
            layout: fresh.layout.clone(),
            ..j
        };
        return Some((j, None));
    }
    let r = replan(&j, &fresh.layout, &steps(plan))?;
    Some((j, Some(r)))
}

fn sha256_json<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Per interface of `plan` and per part of its steps (links, sysctls, nftables), where
/// those steps are in [`steps`] and a digest of what they do. Only what reaches the
/// namespace counts: a change to, say, the guest device or a DHCP option does not change
/// the layout; a change to the NAT ports changes the interface's nftables part alone.
pub fn layout(plan: &NetworkPlan) -> Vec<Span> {
    let mut first = 1;
    let mut out = Vec::new();
    for iface in &plan.interfaces {
        let nft: Vec<_> = iface.nftables.iter().filter(|n| !n.is_empty()).collect();
        let parts = [
            (Part::Links, iface.links.len(), sha256_json(&iface.links)),
            (
                Part::Sysctls,
                iface.sysctls.len(),
                sha256_json(&iface.sysctls),
            ),
            (Part::Nftables, nft.len(), sha256_json(&nft)),
        ];
        // Every interface is in the layout: one without steps (SR-IOV, a tap plugin's
        // device) as an empty links part, so that plugging one is reported too.
        let stepless = parts.iter().all(|(_, count, _)| *count == 0);
        for (part, count, print) in parts {
            if count > 0 || (stepless && part == Part::Links) {
                out.push(Span {
                    interface: iface.name.clone(),
                    part,
                    print,
                    first,
                    count,
                });
                first += count;
            }
        }
    }
    out
}

/// Interfaces a new plan changes against an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanChanges {
    /// Interfaces of the old plan that the new one does not have: what their steps did is
    /// undone first (hot-unplug).
    pub unplugged: Vec<String>,
    /// Interfaces of the new plan that the old one did not have (hot-plug).
    pub plugged: Vec<String>,
    /// Interfaces in both whose steps changed, with the parts that did
    /// (`default (nftables)`): those parts are undone, then made anew.
    pub reworked: Vec<String>,
    /// Interfaces whose links are undone (unplugged, or their links part changed): what
    /// served them (DHCP, RA on a link now gone) serves nothing any more.
    pub relinked: Vec<String>,
}

/// What the journal of an earlier plan becomes under a new one (hot-plugging).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replan {
    /// Entries that stay, numbered as the new plan's steps.
    pub keep: Vec<Entry>,
    /// Entries to undo (newest last, so undo from the end), with their old numbers.
    pub undo: Vec<Entry>,
    pub changes: PlanChanges,
}

/// How the journal `old` carries over to a plan with layout `new` and steps `steps`,
/// part by part (an interface's links, its sysctls, its nftables ruleset):
/// - a part with the same digest in both keeps its entries, renumbered;
/// - the entries of a part that is gone or changed are undone — except a sysctl that the
///   new plan also sets: that entry (with the value from before netbind) passes to the
///   new plan's step, so the setting stays and `down` still puts the original value back.
///
/// A kept entry only keeps its undo: the new plan's steps still check the namespace and
/// act where it differs (a sysctl of a link that was made again, say).
///
/// `None` when the old journal has no layout (written before hot-plugging existed) or an
/// entry lies outside it: then the plan cannot change in place.
pub fn replan(old: &Journal, new: &[Span], steps: &[Step<'_>]) -> Option<Replan> {
    if old.layout.is_empty() && !old.entries.is_empty() {
        return None;
    }
    let same = |a: &Span, b: &Span| a.interface == b.interface && a.part == b.part;
    let kept = |span: &Span| new.iter().find(|n| same(n, span) && n.print == span.print);
    let names = |spans: &[Span]| {
        let mut v: Vec<String> = spans.iter().map(|s| s.interface.clone()).collect();
        v.dedup();
        v
    };
    let (was, is) = (names(&old.layout), names(new));
    let mut changes = PlanChanges {
        unplugged: was.iter().filter(|i| !is.contains(i)).cloned().collect(),
        plugged: is.iter().filter(|i| !was.contains(i)).cloned().collect(),
        ..PlanChanges::default()
    };
    for name in was.iter().filter(|i| is.contains(i)) {
        let differs = |a: &[Span], b: &[Span]| -> Vec<Part> {
            a.iter()
                .filter(|s| &s.interface == name)
                .filter(|s| !b.iter().any(|t| same(s, t) && s.print == t.print))
                .map(|s| s.part)
                .collect()
        };
        let mut parts = differs(&old.layout, new);
        parts.extend(differs(new, &old.layout));
        parts.sort();
        parts.dedup();
        if parts.contains(&Part::Links) {
            changes.relinked.push(name.clone());
        }
        if !parts.is_empty() {
            let parts: Vec<&str> = parts.iter().map(|p| p.as_str()).collect();
            changes
                .reworked
                .push(format!("{name} ({})", parts.join(", ")));
        }
    }
    changes.relinked.extend(changes.unplugged.iter().cloned());
    let mut out = Replan {
        changes,
        ..Replan::default()
    };
    for e in &old.entries {
        let span = old
            .layout
            .iter()
            .find(|s| s.interface == e.interface && s.holds(e.step))?;
        let moved = match (kept(span), &e.undo) {
            (Some(n), _) => (e.step - span.first)
                .checked_add(n.first)
                .map(|step| (step, n.interface.clone())),
            (None, Undo::Sysctl { key, .. }) => steps
                .iter()
                .find(|s| matches!(s.kind, StepKind::Sysctl(x) if x.key == *key))
                .map(|s| (s.number, s.interface.to_string())),
            (None, _) => None,
        };
        match moved {
            Some((step, interface)) if !out.keep.iter().any(|k| k.step == step) => {
                out.keep.push(Entry {
                    step,
                    interface,
                    ..e.clone()
                })
            }
            _ => out.undo.push(e.clone()),
        }
    }
    Some(out)
}

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
    let mut report = crate::in_netns(netns, |ns| {
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
        let mut run = Run {
            ns,
            state: &state,
            journal,
            report,
            new_entries: Vec::new(),
            known: Default::default(),
        };
        run.read_links()?;
        run.all(plan, options)?;
        Ok::<_, ApplyError>(run.report)
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
        match undo(ns, &entry.undo) {
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
    let undone = crate::in_netns(netns, |ns| {
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
                if found == kind || (kind == "dummy" && found == "ifb") {
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
            undo(ns, &entry.undo).map_err(|source| ApplyError::Undo {
                step: entry.step,
                what: entry.what.clone(),
                source: Box::new(source),
            })?;
            journal.entries.pop();
            state.append(&Record::Undone(entry.step))?;
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

/// What a check found.
enum Check {
    /// The step's result is already there.
    Done,
    /// Something to do; the undo of what is there now.
    Act(Undo),
}

struct Run<'a> {
    ns: &'a Ns,
    state: &'a StateDir,
    journal: Journal,
    report: ApplyReport,
    /// Indices (in `journal.entries`) of entries this run added, oldest first.
    new_entries: Vec<usize>,
    /// The links as this run last read them or made them; a name not in the map is
    /// absent (the run starts from a dump of all links).
    known: std::cell::RefCell<std::collections::HashMap<String, Known>>,
}

/// What a run knows of one link name.
#[derive(Clone)]
enum Known {
    Link(LinkState),
    Absent,
    /// Changed by this run in ways not all known here: ask the kernel.
    Ask,
}

impl Run<'_> {
    fn read_links(&mut self) -> Result<(), ApplyError> {
        let all = self
            .ns
            .block_on(self.ns.links.all())
            .map_err(ApplyError::ReadLinks)?;
        *self.known.get_mut() = all
            .into_iter()
            .map(|s| (s.name.clone(), Known::Link(s)))
            .collect();
        Ok(())
    }

    fn all(&mut self, plan: &NetworkPlan, options: &ApplyOptions) -> Result<(), ApplyError> {
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
        Ok(())
    }

    fn roll_back(&mut self, step: &Step<'_>, total: usize, source: StepError) -> ApplyError {
        let mut rolled_back = 0;
        while let Some(i) = self.new_entries.pop() {
            let entry = self.journal.entries[i].clone();
            if let Err(e) = undo(self.ns, &entry.undo) {
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
        let check = match self.check(step, recorded.is_some()) {
            // The link is gone because a later step of the plan already renamed it: this
            // step ran before that rename did (a re-run after a kill in between).
            Err(StepError::Link(LinkError::NotFound { link })) => {
                match renamed_later(all, step.number, &link) {
                    Some(to) if self.link(to)?.is_some() => Check::Done,
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
        self.act(step)
    }

    /// The link as this run last saw it, else as the kernel has it now.
    fn link(&self, name: &str) -> Result<Option<LinkState>, StepError> {
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
    fn changed(&self, name: &str, change: impl FnOnce(&mut LinkState)) {
        if let Some(Known::Link(s)) = self.known.borrow_mut().get_mut(name) {
            change(s);
        }
    }

    /// An act changed `name` in ways not all known here: the next step asks the kernel.
    fn forget(&self, name: &str) {
        self.known.borrow_mut().insert(name.to_string(), Known::Ask);
    }

    fn require(&self, name: &str) -> Result<LinkState, StepError> {
        self.link(name)?.ok_or_else(|| {
            StepError::Link(LinkError::NotFound {
                link: name.to_string(),
            })
        })
    }

    /// For a link-creating step: `Act(DeleteLink)` when absent, `Done` when ours and
    /// right, an error when someone else's.
    fn check_create(
        &self,
        name: &str,
        kinds: &[&str],
        ours: bool,
        mac: Option<&str>,
        mtu: u32,
    ) -> Result<Check, StepError> {
        match self.link(name)? {
            None => Ok(Check::Act(Undo::DeleteLink {
                link: name.to_string(),
                kind: kinds[0].to_string(),
            })),
            Some(s) => {
                let kind = s.kind.clone().unwrap_or_default();
                if !ours || !kinds.contains(&kind.as_str()) {
                    return Err(StepError::Exists {
                        link: name.to_string(),
                        kind,
                    });
                }
                let mac_ok =
                    mac.is_none_or(|m| s.mac.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)));
                // Ours and already made: finishing touches only (no new undo needed).
                if mac_ok && s.mtu == mtu {
                    Ok(Check::Done)
                } else {
                    Ok(Check::Act(Undo::DeleteLink {
                        link: name.to_string(),
                        kind,
                    }))
                }
            }
        }
    }

    fn check(&self, step: &Step<'_>, ours: bool) -> Result<Check, StepError> {
        let links = &self.ns.links;
        let ns = self.ns;
        match step.kind {
            StepKind::Link(l) => match l {
                LinkStep::CreateBridge { name, mac, mtu } => {
                    self.check_create(name, &["bridge"], ours, mac.as_deref(), *mtu)
                }
                LinkStep::CreateTap { name, mtu, .. } => {
                    crate::link::check_name(name)?;
                    self.check_create(name, &["tun"], ours, None, *mtu)
                }
                LinkStep::CreateDummy {
                    name,
                    mac,
                    mtu,
                    addresses,
                } => {
                    let c =
                        self.check_create(name, &["dummy", "ifb"], ours, mac.as_deref(), *mtu)?;
                    if let Check::Done = c {
                        let s = self.require(name)?;
                        let have = ns.block_on(links.addresses(&s))?;
                        if addresses.iter().any(|a| !have.contains(a)) {
                            return Ok(Check::Act(Undo::DeleteLink {
                                link: name.clone(),
                                kind: "dummy".into(),
                            }));
                        }
                    }
                    Ok(c)
                }
                LinkStep::SetDown { link } => {
                    let s = self.require(link)?;
                    if !s.up {
                        return Ok(Check::Done);
                    }
                    let config = ns.block_on(links.config(&s))?;
                    Ok(Check::Act(Undo::SetUpAndRestore {
                        link: link.clone(),
                        config,
                    }))
                }
                LinkStep::SetUp { link } => {
                    let s = self.require(link)?;
                    Ok(if s.up {
                        Check::Done
                    } else {
                        Check::Act(Undo::SetDown { link: link.clone() })
                    })
                }
                LinkStep::RenameLink { from, to } => {
                    if self.link(to)?.is_some() {
                        return Ok(Check::Done);
                    }
                    self.require(from)?;
                    Ok(Check::Act(Undo::Rename {
                        now: to.clone(),
                        back: from.clone(),
                    }))
                }
                LinkStep::SetMac { link, mac } => {
                    let s = self.require(link)?;
                    match &s.mac {
                        Some(m) if m.eq_ignore_ascii_case(mac) => Ok(Check::Done),
                        Some(m) => Ok(Check::Act(Undo::SetMac {
                            link: link.clone(),
                            mac: m.clone(),
                        })),
                        None => Err(StepError::Link(LinkError::Invalid {
                            what: "link without a MAC address",
                            value: link.clone(),
                            link: link.clone(),
                        })),
                    }
                }
                LinkStep::SetMtu { link, mtu } => {
                    let s = self.require(link)?;
                    Ok(if s.mtu == *mtu {
                        Check::Done
                    } else {
                        Check::Act(Undo::SetMtu {
                            link: link.clone(),
                            mtu: s.mtu,
                        })
                    })
                }
                LinkStep::FlushAddresses { link } => {
                    let s = self.require(link)?;
                    let have = ns.block_on(links.addresses(&s))?;
                    // A link that is up again gets its IPv6 link-local address back from
                    // the kernel; that is the flushed state as far as the plan goes.
                    let left = have
                        .iter()
                        .filter(|a| !(s.up && matches!(a, ipnet::IpNet::V6(n) if (n.addr().segments()[0] & 0xffc0) == 0xfe80)))
                        .count();
                    if left == 0 {
                        return Ok(Check::Done);
                    }
                    let config = ns.block_on(links.config(&s))?;
                    Ok(Check::Act(Undo::Restore {
                        link: link.clone(),
                        config,
                    }))
                }
                LinkStep::AddAddress { link, address } => {
                    let s = self.require(link)?;
                    let have = ns.block_on(links.addresses(&s))?;
                    Ok(if have.contains(address) {
                        Check::Done
                    } else {
                        Check::Act(Undo::DeleteAddress {
                            link: link.clone(),
                            address: *address,
                        })
                    })
                }
                LinkStep::SetMaster { link, master } => {
                    let s = self.require(link)?;
                    let m = self.require(master)?;
                    if s.controller == Some(m.index) {
                        return Ok(Check::Done);
                    }
                    let old = match s.controller {
                        Some(i) => ns.block_on(links.name_of(i))?,
                        None => None,
                    };
                    Ok(Check::Act(Undo::SetMaster {
                        link: link.clone(),
                        master: old,
                    }))
                }
                LinkStep::SetLearning { link, learning } => {
                    let s = self.require(link)?;
                    match s.learning {
                        None => Err(StepError::NotAPort { link: link.clone() }),
                        Some(l) if l == *learning => Ok(Check::Done),
                        Some(l) => Ok(Check::Act(Undo::SetLearning {
                            link: link.clone(),
                            learning: l,
                        })),
                    }
                }
            },
            StepKind::Sysctl(s) => {
                let now = sysctl::read(&s.key)?;
                Ok(if now == s.value.trim() {
                    Check::Done
                } else {
                    Check::Act(Undo::Sysctl {
                        key: s.key.clone(),
                        value: now,
                    })
                })
            }
            StepKind::Nft(n) => {
                let recorded = self.journal.entries.iter().find(|e| e.step == step.number);
                if let Some(Entry {
                    undo: Undo::Nft { tables },
                    ..
                }) = recorded
                {
                    return Ok(if Nft::is_loaded(tables)? {
                        Check::Done
                    } else {
                        Check::Act(Undo::Nft {
                            tables: tables.clone(),
                        })
                    });
                }
                Ok(Check::Act(Undo::Nft {
                    tables: Nft::snapshot(n)?,
                }))
            }
        }
    }

    /// Carries out a step the check found something to do for, and keeps
    /// [`Run::known`] true to what it did.
    fn act(&mut self, step: &Step<'_>) -> Result<(), StepError> {
        let links = &self.ns.links;
        let ns = self.ns;
        match step.kind {
            StepKind::Link(l) => match l {
                LinkStep::CreateBridge { name, mac, mtu } => {
                    match self.link(name)? {
                        None => {
                            ns.block_on(links.create_bridge(name, mac.as_deref(), *mtu))?;
                            self.report.created.push(name.clone());
                        }
                        Some(s) => {
                            if let Some(mac) = mac {
                                ns.block_on(links.set_mac(&s, mac))?;
                            }
                            ns.block_on(links.set_mtu(&s, *mtu))?;
                        }
                    }
                    self.forget(name);
                    Ok(())
                }
                LinkStep::CreateTap {
                    name,
                    mtu,
                    queues,
                    uid,
                    gid,
                } => {
                    let s = match self.link(name)? {
                        Some(s) => s,
                        None => {
                            crate::sys::create_persistent_tap(name, *queues > 1, *uid, *gid)?;
                            self.report.created.push(name.clone());
                            self.forget(name);
                            self.require(name)?
                        }
                    };
                    if s.mtu != *mtu {
                        ns.block_on(links.set_mtu(&s, *mtu))?;
                        self.changed(name, |s| s.mtu = *mtu);
                    }
                    Ok(())
                }
                LinkStep::CreateDummy {
                    name,
                    mac,
                    mtu,
                    addresses,
                } => {
                    let s = match self.link(name)? {
                        Some(s) => s,
                        None => {
                            let kind =
                                ns.block_on(links.create_placeholder(name, mac.as_deref(), *mtu))?;
                            if kind != "dummy" {
                                self.report.notes.push(format!(
                                    "this kernel has no dummy driver: {name} was made as an {kind} link"
                                ));
                            }
                            self.report.created.push(name.clone());
                            self.forget(name);
                            self.require(name)?
                        }
                    };
                    if let Some(mac) = mac
                        && !s
                            .mac
                            .as_deref()
                            .is_some_and(|m| m.eq_ignore_ascii_case(mac))
                    {
                        ns.block_on(links.set_mac(&s, mac))?;
                    }
                    if s.mtu != *mtu {
                        ns.block_on(links.set_mtu(&s, *mtu))?;
                    }
                    for a in addresses {
                        ns.block_on(links.add_address(&s, *a))?;
                    }
                    self.forget(name);
                    Ok(())
                }
                LinkStep::SetDown { link } => {
                    let s = self.require(link)?;
                    ns.block_on(links.set_up(&s, false))?;
                    self.changed(link, |s| s.up = false);
                    Ok(())
                }
                LinkStep::SetUp { link } => {
                    let s = self.require(link)?;
                    ns.block_on(links.set_up(&s, true))?;
                    self.changed(link, |s| s.up = true);
                    Ok(())
                }
                LinkStep::RenameLink { from, to } => {
                    if self.link(to)?.is_some() {
                        return Ok(());
                    }
                    let mut s = self.require(from)?;
                    ns.block_on(links.rename(&s, to))?;
                    s.name = to.clone();
                    let mut known = self.known.borrow_mut();
                    known.insert(from.clone(), Known::Absent);
                    known.insert(to.clone(), Known::Link(s));
                    Ok(())
                }
                LinkStep::SetMac { link, mac } => {
                    let s = self.require(link)?;
                    ns.block_on(links.set_mac(&s, mac))?;
                    self.changed(link, |s| s.mac = Some(mac.clone()));
                    Ok(())
                }
                LinkStep::SetMtu { link, mtu } => {
                    let s = self.require(link)?;
                    ns.block_on(links.set_mtu(&s, *mtu))?;
                    self.changed(link, |s| s.mtu = *mtu);
                    Ok(())
                }
                LinkStep::FlushAddresses { link } => {
                    let s = self.require(link)?;
                    ns.block_on(links.delete_addresses(&s, None))?;
                    Ok(())
                }
                LinkStep::AddAddress { link, address } => {
                    let s = self.require(link)?;
                    ns.block_on(links.add_address(&s, *address))?;
                    Ok(())
                }
                LinkStep::SetMaster { link, master } => {
                    let s = self.require(link)?;
                    let m = self.require(master)?;
                    ns.block_on(links.set_controller(&s, Some(m.index)))?;
                    // The port's bridge-port attributes are new. The bridge may lower its
                    // MTU to the port's, but no later step of a run reads a master's MTU.
                    self.forget(link);
                    Ok(())
                }
                LinkStep::SetLearning { link, learning } => {
                    let s = self.require(link)?;
                    ns.block_on(links.set_learning(&s, *learning))?;
                    self.changed(link, |s| s.learning = Some(*learning));
                    Ok(())
                }
            },
            StepKind::Sysctl(s) => Ok(sysctl::write(&s.key, &s.value)?),
            StepKind::Nft(n) => Ok(Nft::load(n)?),
        }
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

/// Puts back what one step changed; safe to repeat.
fn undo(ns: &Ns, undo: &Undo) -> Result<(), StepError> {
    let links = &ns.links;
    let state = |name: &str| ns.block_on(links.state(name));
    match undo {
        Undo::DeleteLink { link, kind } => {
            if let Some(s) = state(link)? {
                let found = s.kind.as_deref().unwrap_or_default();
                let same = found == kind || (kind == "dummy" && found == "ifb");
                if same {
                    ns.block_on(links.delete(link))?;
                }
            }
        }
        Undo::SetUpAndRestore { link, config } => {
            let s = ns.block_on(links.require(link))?;
            if !s.up {
                ns.block_on(links.set_up(&s, true))?;
            }
            ns.block_on(links.restore(&s, config))?;
        }
        Undo::SetDown { link } => {
            if let Some(s) = state(link)?.filter(|s| s.up) {
                ns.block_on(links.set_up(&s, false))?;
            }
        }
        Undo::Rename { now, back } => {
            if state(back)?.is_none() {
                let s = ns.block_on(links.require(now))?;
                ns.block_on(links.rename(&s, back))?;
            }
        }
        Undo::SetMac { link, mac } => {
            if let Some(s) = state(link)?
                && !s
                    .mac
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(mac))
            {
                ns.block_on(links.set_mac(&s, mac))?;
            }
        }
        Undo::SetMtu { link, mtu } => {
            if let Some(s) = state(link)?.filter(|s| s.mtu != *mtu) {
                ns.block_on(links.set_mtu(&s, *mtu))?;
            }
        }
        Undo::Restore { link, config } => {
            if let Some(s) = state(link)? {
                ns.block_on(links.restore(&s, config))?;
            }
        }
        Undo::DeleteAddress { link, address } => {
            if let Some(s) = state(link)? {
                ns.block_on(links.delete_addresses(&s, Some(*address)))?;
            }
        }
        Undo::SetMaster { link, master } => {
            if let Some(s) = state(link)? {
                let want = match master {
                    Some(m) => state(m)?.map(|m| m.index),
                    None => None,
                };
                if s.controller != want {
                    ns.block_on(links.set_controller(&s, want))?;
                }
            }
        }
        Undo::SetLearning { link, learning } => {
            if let Some(s) = state(link)?.filter(|s| s.learning.is_some_and(|l| l != *learning)) {
                ns.block_on(links.set_learning(&s, *learning))?;
            }
        }
        Undo::Sysctl { key, value } => match sysctl::read(key) {
            Ok(now) if now != *value => sysctl::write(key, value)?,
            Ok(_) => {}
            // The device the key belongs to is gone (deleted with its link): nothing to put back.
            Err(SysctlError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        },
        Undo::Nft { tables } => Nft::unload(tables)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netbind_plan::model::*;

    fn plan_of(ifaces: Vec<InterfacePlan>) -> NetworkPlan {
        NetworkPlan {
            interfaces: ifaces,
            ..NetworkPlan::default()
        }
    }

    fn up(link: &str) -> LinkStep {
        LinkStep::SetUp { link: link.into() }
    }

    fn forward() -> Vec<Sysctl> {
        vec![Sysctl::new("net.ipv4.conf.all.arp_ignore", "1")]
    }

    /// A journal of `plan` in which every step recorded an undo.
    fn journal_of(plan: &NetworkPlan) -> Journal {
        Journal {
            version: VERSION,
            plan: fingerprint(&layout(plan)),
            object: String::new(),
            netns: String::new(),
            complete: true,
            entries: steps(plan)
                .iter()
                .map(|s| Entry {
                    step: s.number,
                    interface: s.interface.to_string(),
                    what: s.describe(),
                    undo: match s.kind {
                        StepKind::Sysctl(x) => Undo::Sysctl {
                            key: x.key.clone(),
                            value: "0".into(),
                        },
                        _ => Undo::SetDown {
                            link: s.link().unwrap_or_default().to_string(),
                        },
                    },
                })
                .collect(),
            layout: layout(plan),
        }
    }

    fn numbers(entries: &[Entry]) -> Vec<(usize, &str, &str)> {
        entries
            .iter()
            .map(|e| (e.step, e.interface.as_str(), e.what.as_str()))
            .collect()
    }

    #[test]
    fn a_plugged_interface_leaves_the_others_entries_as_they_were() {
        let a = iface("a", vec![up("x"), up("y")], vec![]);
        let old = plan_of(vec![a.clone()]);
        let new = plan_of(vec![a, iface("b", vec![up("z")], vec![])]);
        let r = replan(&journal_of(&old), &layout(&new), &steps(&new)).unwrap();
        assert_eq!(
            numbers(&r.keep),
            [(1, "a", "set x up"), (2, "a", "set y up")]
        );
        assert!(r.undo.is_empty());
        assert_eq!(
            (r.changes.unplugged, r.changes.plugged),
            (vec![], vec!["b".to_string()])
        );
    }

    #[test]
    fn an_unplugged_interface_is_undone_and_later_ones_are_renumbered() {
        let b = iface("b", vec![up("z")], vec![]);
        let old = plan_of(vec![iface("a", vec![up("x"), up("y")], vec![]), b.clone()]);
        let new = plan_of(vec![b]);
        let r = replan(&journal_of(&old), &layout(&new), &steps(&new)).unwrap();
        assert_eq!(numbers(&r.keep), [(1, "b", "set z up")]);
        assert_eq!(
            numbers(&r.undo),
            [(1, "a", "set x up"), (2, "a", "set y up")]
        );
        assert_eq!(r.changes.unplugged, ["a"]);
    }

    #[test]
    fn a_changed_part_is_undone_and_made_anew() {
        let old = plan_of(vec![iface("a", vec![up("x")], vec![])]);
        let new = plan_of(vec![iface("a", vec![up("x"), up("w")], vec![])]);
        let r = replan(&journal_of(&old), &layout(&new), &steps(&new)).unwrap();
        assert!(r.keep.is_empty());
        assert_eq!(numbers(&r.undo), [(1, "a", "set x up")]);
        assert_eq!(r.changes.reworked, ["a (links)"]);
        assert!(r.changes.unplugged.is_empty() && r.changes.plugged.is_empty());
    }

    #[test]
    fn only_the_changed_part_of_an_interface_is_undone() {
        let old = plan_of(vec![iface("a", vec![up("x")], forward())]);
        let other = vec![Sysctl::new("net.ipv4.ip_forward", "1")];
        let new = plan_of(vec![iface("a", vec![up("x")], other)]);
        let r = replan(&journal_of(&old), &layout(&new), &steps(&new)).unwrap();
        assert_eq!(numbers(&r.keep), [(1, "a", "set x up")]);
        assert_eq!(
            numbers(&r.undo),
            [(2, "a", "sysctl net.ipv4.conf.all.arp_ignore=1")]
        );
        assert_eq!(r.changes.reworked, ["a (sysctls)"]);
    }

    #[test]
    fn a_sysctl_of_an_unplugged_interface_passes_to_one_that_still_sets_it() {
        // `a` set it first (and holds the value from before); `b` found it set.
        let b = iface("b", vec![up("z")], forward());
        let old = plan_of(vec![iface("a", vec![up("x")], forward()), b.clone()]);
        let mut journal = journal_of(&old);
        journal.entries.retain(|e| e.step != 4);
        let new = plan_of(vec![b]);
        let r = replan(&journal, &layout(&new), &steps(&new)).unwrap();
        assert_eq!(
            numbers(&r.keep),
            [
                (2, "b", "sysctl net.ipv4.conf.all.arp_ignore=1"),
                (1, "b", "set z up")
            ]
        );
        assert_eq!(numbers(&r.undo), [(1, "a", "set x up")]);
    }

    #[test]
    fn plugging_an_interface_without_steps_is_reported() {
        let old = plan_of(vec![iface("a", vec![up("x")], vec![])]);
        let new = plan_of(vec![
            iface("a", vec![up("x")], vec![]),
            iface("vf", vec![], vec![]),
        ]);
        let r = replan(&journal_of(&old), &layout(&new), &steps(&new)).unwrap();
        assert_eq!(r.changes.plugged, ["vf"]);
        assert_eq!(numbers(&r.keep), [(1, "a", "set x up")]);
    }

    #[test]
    fn links_undone_are_relinked_and_new_rules_alone_are_not() {
        let a = iface("a", vec![up("x")], forward());
        let old = plan_of(vec![a.clone(), iface("b", vec![up("y")], vec![])]);
        let mut a2 = a;
        a2.sysctls = vec![Sysctl::new("net.ipv4.ip_forward", "1")];
        let new = plan_of(vec![a2]);
        let r = replan(&journal_of(&old), &layout(&new), &steps(&new)).unwrap();
        assert_eq!(r.changes.relinked, ["b"]);
        assert_eq!(r.changes.reworked, ["a (sysctls)"]);
    }

    #[test]
    fn the_same_plan_goes_on_with_the_journal_found_under_either_fingerprint() {
        let plan = plan_of(vec![iface("a", vec![up("x")], vec![])]);
        let fresh = Journal {
            entries: vec![],
            complete: false,
            ..journal_of(&plan)
        };
        // Written before journals had a layout: the digest of the whole plan.
        let legacy = Journal {
            plan: legacy_fingerprint(&plan),
            layout: vec![],
            ..journal_of(&plan)
        };
        let (j, replanned) = carry_over(Some(legacy.clone()), &fresh, &plan).unwrap();
        assert_eq!(replanned, None);
        assert_eq!(
            (j.plan, j.layout),
            (fresh.plan.clone(), fresh.layout.clone())
        );
        assert_eq!(j.entries, legacy.entries);

        let other = plan_of(vec![iface("a", vec![up("w")], vec![])]);
        let other_fresh = Journal {
            entries: vec![],
            ..journal_of(&other)
        };
        assert_eq!(carry_over(Some(legacy), &other_fresh, &other), None);
    }

    #[test]
    fn a_journal_without_a_layout_cannot_change_its_plan() {
        let old = plan_of(vec![iface("a", vec![up("x")], vec![])]);
        let mut journal = journal_of(&old);
        journal.layout.clear();
        let new = plan_of(vec![]);
        assert_eq!(replan(&journal, &layout(&new), &steps(&new)), None);
    }

    fn iface(name: &str, links: Vec<LinkStep>, sysctls: Vec<Sysctl>) -> InterfacePlan {
        InterfacePlan {
            name: name.into(),
            network: name.into(),
            source: Source::Pod,
            method: Method::Bridge,
            binding: "bridge".into(),
            state: netbind_plan::model::LinkState::Up,
            pod_link: PodLinkInfo {
                name: "eth0".into(),
                present: true,
                mac: None,
                mtu: 1500,
                addresses: vec![],
            },
            links,
            sysctls,
            nftables: None,
            dhcp4: None,
            dhcp6: None,
            ra: None,
            usernet: None,
            guest: GuestDevice {
                alias: "ua-x".into(),
                model: "virtio".into(),
                qemu_driver: "virtio-net-pci".into(),
                mac: None,
                mtu: None,
                queues: 1,
                pci_address: None,
                boot_order: None,
                acpi_index: None,
                link_down: false,
                backend: GuestBackend::Tap {
                    device: "tap0".into(),
                },
                libvirt_xml: String::new(),
                qemu_args: vec![],
            },
            notes: vec![],
        }
    }

    #[test]
    fn steps_run_links_then_sysctls_per_interface_numbered_from_one() {
        let plan = NetworkPlan {
            interfaces: vec![
                iface(
                    "a",
                    vec![
                        LinkStep::SetUp { link: "x".into() },
                        LinkStep::SetDown { link: "y".into() },
                    ],
                    vec![Sysctl::new("net.ipv4.ip_forward", "1")],
                ),
                iface(
                    "b",
                    vec![LinkStep::RenameLink {
                        from: "p".into(),
                        to: "q".into(),
                    }],
                    vec![],
                ),
            ],
            ..NetworkPlan::default()
        };
        let s = steps(&plan);
        let words: Vec<_> = s
            .iter()
            .map(|s| (s.number, s.interface, s.describe()))
            .collect();
        assert_eq!(
            words,
            [
                (1, "a", "set x up".to_string()),
                (2, "a", "set y down".to_string()),
                (3, "a", "sysctl net.ipv4.ip_forward=1".to_string()),
                (4, "b", "rename p to q".to_string()),
            ]
        );
        assert_eq!(s[3].link(), Some("p"));
        assert_eq!(s[2].link(), None);
    }

    #[test]
    fn the_fingerprint_follows_what_reaches_the_namespace_only() {
        let a = plan_of(vec![iface("a", vec![up("x")], vec![])]);
        let mut other_guest = a.clone();
        other_guest.interfaces[0].guest.mac = Some("02:00:00:00:00:01".into());
        let other_links = plan_of(vec![iface("a", vec![up("y")], vec![])]);
        let print = |p: &NetworkPlan| fingerprint(&layout(p));
        assert_eq!(print(&a), print(&other_guest));
        assert_ne!(print(&a), print(&other_links));
    }

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
