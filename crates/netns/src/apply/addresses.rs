//! Address steps: flushing a link's addresses (its configuration recorded, so undo puts
//! addresses and routes back: [`Undo::Restore`]) and adding one ([`Undo::DeleteAddress`]).
//!
//! Addresses are not in the run's picture of the links: checks ask the kernel (one
//! address dump of the one link, filtered there). A link that is up again gets its IPv6
//! link-local address back from the kernel; for a flush that counts as flushed. Undo
//! of either on a link that is gone does nothing.

use ipnet::IpNet;

use super::ctx::{Check, Ctx};
use super::step::StepError;
use crate::journal::Undo;
use crate::link::LinkConfig;
use crate::ns::Ns;

pub(super) fn check_flush(ctx: &Ctx<'_>, link: &str) -> Result<Check, StepError> {
    let (ns, links) = (ctx.ns, &ctx.ns.links);
    let s = ctx.require(link)?;
    let have = ns.block_on(links.addresses(&s))?;
    // A link that is up again gets its IPv6 link-local address back from
    // the kernel; that is the flushed state as far as the plan goes.
    let left = have
        .iter()
        .filter(|a| {
            !(s.up && matches!(a, IpNet::V6(n) if (n.addr().segments()[0] & 0xffc0) == 0xfe80))
        })
        .count();
    if left == 0 {
        return Ok(Check::Done);
    }
    let config = ns.block_on(links.config(&s))?;
    Ok(Check::Act(Undo::Restore {
        link: link.to_string(),
        config,
    }))
}

pub(super) fn flush(ctx: &mut Ctx<'_>, link: &str) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    ctx.ns.block_on(ctx.ns.links.delete_addresses(&s, None))?;
    Ok(())
}

/// Undo of a flush: the addresses and routes the link had.
pub(super) fn undo_flush(ns: &Ns, link: &str, config: &LinkConfig) -> Result<(), StepError> {
    if let Some(s) = ns.block_on(ns.links.state(link))? {
        ns.block_on(ns.links.restore(&s, config))?;
    }
    Ok(())
}

pub(super) fn check_add(ctx: &Ctx<'_>, link: &str, address: IpNet) -> Result<Check, StepError> {
    let s = ctx.require(link)?;
    let have = ctx.ns.block_on(ctx.ns.links.addresses(&s))?;
    Ok(if have.contains(&address) {
        Check::Done
    } else {
        Check::Act(Undo::DeleteAddress {
            link: link.to_string(),
            address,
        })
    })
}

pub(super) fn add(ctx: &mut Ctx<'_>, link: &str, address: IpNet) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    ctx.ns.block_on(ctx.ns.links.add_address(&s, address))?;
    Ok(())
}

/// Undo of an added address.
pub(super) fn undo_add(ns: &Ns, link: &str, address: IpNet) -> Result<(), StepError> {
    if let Some(s) = ns.block_on(ns.links.state(link))? {
        ns.block_on(ns.links.delete_addresses(&s, Some(address)))?;
    }
    Ok(())
}
