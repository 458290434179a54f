//! From a step (or a journal's undo) to the module of its kind: the one place that lists
//! every kind. Each arm hands over to the family that holds that kind's check, act and
//! undo side by side — [`new_links`] (bridge, tap, placeholder), [`link_state`] (up,
//! down, rename, MAC, MTU), [`addresses`], [`ports`] (master, learning), [`sysctls`],
//! [`nftables`]. Adding a step kind is a function triple in its family's file and one arm
//! in each match here.

use netbind_plan::model::LinkStep;

use super::ctx::{Check, Ctx};
use super::step::{StepError, StepKind};
use super::{addresses, link_state, new_links, nftables, ports, sysctls};
use crate::journal::Undo;
use crate::ns::Ns;

/// Reads what `kind` would change: done already, or the undo of what is there.
/// `recorded`: the undo the journal holds for this step (it is ours), if any.
pub(super) fn check(
    ctx: &Ctx<'_>,
    kind: StepKind<'_>,
    recorded: Option<&Undo>,
) -> Result<Check, StepError> {
    let ours = recorded.is_some();
    match kind {
        StepKind::Link(l) => match l {
            LinkStep::CreateBridge { name, mac, mtu } => {
                new_links::check_bridge(ctx, name, mac.as_deref(), *mtu, ours)
            }
            LinkStep::CreateTap { name, mtu, .. } => new_links::check_tap(ctx, name, *mtu, ours),
            LinkStep::CreateDummy {
                name,
                mac,
                mtu,
                addresses,
            } => new_links::check_placeholder(ctx, name, mac.as_deref(), *mtu, addresses, ours),
            LinkStep::SetDown { link } => link_state::check_down(ctx, link),
            LinkStep::SetUp { link } => link_state::check_up(ctx, link),
            LinkStep::RenameLink { from, to } => link_state::check_rename(ctx, from, to),
            LinkStep::SetMac { link, mac } => link_state::check_mac(ctx, link, mac),
            LinkStep::SetMtu { link, mtu } => link_state::check_mtu(ctx, link, *mtu),
            LinkStep::FlushAddresses { link } => addresses::check_flush(ctx, link),
            LinkStep::AddAddress { link, address } => addresses::check_add(ctx, link, *address),
            LinkStep::SetMaster { link, master } => ports::check_master(ctx, link, master),
            LinkStep::SetLearning { link, learning } => ports::check_learning(ctx, link, *learning),
        },
        StepKind::Sysctl(s) => sysctls::check(s),
        StepKind::Nft(n) => nftables::check(n, recorded),
    }
}

/// Carries out a step the check found something to do for, keeping the run's picture
/// of the links true to what it did.
pub(super) fn act(ctx: &mut Ctx<'_>, kind: StepKind<'_>) -> Result<(), StepError> {
    match kind {
        StepKind::Link(l) => match l {
            LinkStep::CreateBridge { name, mac, mtu } => {
                new_links::create_bridge(ctx, name, mac.as_deref(), *mtu)
            }
            LinkStep::CreateTap {
                name,
                mtu,
                queues,
                uid,
                gid,
            } => new_links::create_tap(ctx, name, *mtu, *queues, *uid, *gid),
            LinkStep::CreateDummy {
                name,
                mac,
                mtu,
                addresses,
            } => new_links::create_placeholder(ctx, name, mac.as_deref(), *mtu, addresses),
            LinkStep::SetDown { link } => link_state::set_down(ctx, link),
            LinkStep::SetUp { link } => link_state::set_up(ctx, link),
            LinkStep::RenameLink { from, to } => link_state::rename(ctx, from, to),
            LinkStep::SetMac { link, mac } => link_state::set_mac(ctx, link, mac),
            LinkStep::SetMtu { link, mtu } => link_state::set_mtu(ctx, link, *mtu),
            LinkStep::FlushAddresses { link } => addresses::flush(ctx, link),
            LinkStep::AddAddress { link, address } => addresses::add(ctx, link, *address),
            LinkStep::SetMaster { link, master } => ports::set_master(ctx, link, master),
            LinkStep::SetLearning { link, learning } => ports::set_learning(ctx, link, *learning),
        },
        StepKind::Sysctl(s) => sysctls::act(s),
        StepKind::Nft(n) => nftables::act(n),
    }
}

/// Puts back what one step changed; safe to repeat.
pub(super) fn undo(ns: &Ns, undo: &Undo) -> Result<(), StepError> {
    match undo {
        Undo::DeleteLink { link, kind } => new_links::delete(ns, link, kind),
        Undo::SetUpAndRestore { link, config } => link_state::undo_down(ns, link, config),
        Undo::SetDown { link } => link_state::undo_up(ns, link),
        Undo::Rename { now, back } => link_state::undo_rename(ns, now, back),
        Undo::SetMac { link, mac } => link_state::undo_mac(ns, link, mac),
        Undo::SetMtu { link, mtu } => link_state::undo_mtu(ns, link, *mtu),
        Undo::Restore { link, config } => addresses::undo_flush(ns, link, config),
        Undo::DeleteAddress { link, address } => addresses::undo_add(ns, link, *address),
        Undo::SetMaster { link, master } => ports::undo_master(ns, link, master.as_deref()),
        Undo::SetLearning { link, learning } => ports::undo_learning(ns, link, *learning),
        Undo::Sysctl { key, value } => sysctls::undo(key, value),
        Undo::Nft { tables } => nftables::undo(tables),
    }
}
