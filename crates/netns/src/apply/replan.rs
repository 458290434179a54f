//! Hot-plugging: how the journal of an earlier plan carries over to a changed one.
//!
//! A journal records, besides its entries, the *layout* of the plan that wrote it
//! ([`layout`]): per interface and part — links, sysctls, nftables — its step numbers
//! and a digest of what those steps do (only what reaches the namespace counts). Against
//! the new plan's layout, [`replan`] keeps the entries of every unchanged part,
//! renumbered to the new plan's steps, and lists the entries of dropped or changed parts
//! to undo first (newest first); a sysctl another interface of the new plan still sets
//! passes to that step instead, so the original value is still put back by `down`.
//! [`carry_over`] decides, from what the state dir holds, whether a run goes on with the
//! journal found (same plan, under either fingerprint) or replans it. All of it is pure:
//! the interpreter does the undoing ([`super::apply_with`]).

use netbind_plan::NetworkPlan;
use sha2::{Digest, Sha256};

use super::step::{Step, StepKind, steps};
use crate::journal::{Entry, Journal, Part, Span, Undo};

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

#[cfg(test)]
mod tests {
    use super::super::step::tests::iface;
    use super::*;
    use crate::journal::VERSION;
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
}
