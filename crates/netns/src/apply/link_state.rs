//! Steps on a link that exists: up and down, rename, MAC, MTU — each check, act and undo
//! side by side.
//!
//! Check reads the link from the run's picture ([`Ctx::link`]) and finds the step done,
//! or returns the undo putting back what is there: taking a link down records its
//! configuration (addresses, routes) too, because a link that goes down loses its routes
//! ([`Undo::SetUpAndRestore`]). Act changes the one attribute and updates the picture.
//! Undo asks the kernel and changes only what differs, so it is safe to repeat; a link
//! that is gone has nothing to put back — except for the undo of a down, which needs it.

use super::ctx::{Check, Ctx};
use super::step::StepError;
use crate::journal::Undo;
use crate::link::{LinkConfig, LinkError};
use crate::ns::Ns;

pub(super) fn check_down(ctx: &Ctx<'_>, link: &str) -> Result<Check, StepError> {
    let s = ctx.require(link)?;
    if !s.up {
        return Ok(Check::Done);
    }
    let config = ctx.ns.block_on(ctx.ns.links.config(&s))?;
    Ok(Check::Act(Undo::SetUpAndRestore {
        link: link.to_string(),
        config,
    }))
}

pub(super) fn set_down(ctx: &mut Ctx<'_>, link: &str) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    ctx.ns.block_on(ctx.ns.links.set_up(&s, false))?;
    ctx.changed(link, |s| s.up = false);
    Ok(())
}

/// Undo of a down: up again, with the configuration it had.
pub(super) fn undo_down(ns: &Ns, link: &str, config: &LinkConfig) -> Result<(), StepError> {
    let links = &ns.links;
    let s = ns.block_on(links.require(link))?;
    if !s.up {
        ns.block_on(links.set_up(&s, true))?;
    }
    ns.block_on(links.restore(&s, config))?;
    Ok(())
}

pub(super) fn check_up(ctx: &Ctx<'_>, link: &str) -> Result<Check, StepError> {
    let s = ctx.require(link)?;
    Ok(if s.up {
        Check::Done
    } else {
        Check::Act(Undo::SetDown {
            link: link.to_string(),
        })
    })
}

pub(super) fn set_up(ctx: &mut Ctx<'_>, link: &str) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    ctx.ns.block_on(ctx.ns.links.set_up(&s, true))?;
    ctx.changed(link, |s| s.up = true);
    Ok(())
}

/// Undo of an up.
pub(super) fn undo_up(ns: &Ns, link: &str) -> Result<(), StepError> {
    if let Some(s) = ns.block_on(ns.links.state(link))?.filter(|s| s.up) {
        ns.block_on(ns.links.set_up(&s, false))?;
    }
    Ok(())
}

pub(super) fn check_rename(ctx: &Ctx<'_>, from: &str, to: &str) -> Result<Check, StepError> {
    if ctx.link(to)?.is_some() {
        return Ok(Check::Done);
    }
    ctx.require(from)?;
    Ok(Check::Act(Undo::Rename {
        now: to.to_string(),
        back: from.to_string(),
    }))
}

pub(super) fn rename(ctx: &mut Ctx<'_>, from: &str, to: &str) -> Result<(), StepError> {
    if ctx.link(to)?.is_some() {
        return Ok(());
    }
    let mut s = ctx.require(from)?;
    ctx.ns.block_on(ctx.ns.links.rename(&s, to))?;
    s.name = to.to_string();
    ctx.renamed(from, s);
    Ok(())
}

/// Undo of a rename: the old name back, unless a link has it again.
pub(super) fn undo_rename(ns: &Ns, now: &str, back: &str) -> Result<(), StepError> {
    if ns.block_on(ns.links.state(back))?.is_none() {
        let s = ns.block_on(ns.links.require(now))?;
        ns.block_on(ns.links.rename(&s, back))?;
    }
    Ok(())
}

pub(super) fn check_mac(ctx: &Ctx<'_>, link: &str, mac: &str) -> Result<Check, StepError> {
    let s = ctx.require(link)?;
    match &s.mac {
        Some(m) if m.eq_ignore_ascii_case(mac) => Ok(Check::Done),
        Some(m) => Ok(Check::Act(Undo::SetMac {
            link: link.to_string(),
            mac: m.clone(),
        })),
        None => Err(StepError::Link(LinkError::Invalid {
            what: "link without a MAC address",
            value: link.to_string(),
            link: link.to_string(),
        })),
    }
}

pub(super) fn set_mac(ctx: &mut Ctx<'_>, link: &str, mac: &str) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    ctx.ns.block_on(ctx.ns.links.set_mac(&s, mac))?;
    ctx.changed(link, |s| s.mac = Some(mac.to_string()));
    Ok(())
}

/// Undo of a MAC change (also: the MAC a link had before).
pub(super) fn undo_mac(ns: &Ns, link: &str, mac: &str) -> Result<(), StepError> {
    if let Some(s) = ns.block_on(ns.links.state(link))?
        && !s
            .mac
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case(mac))
    {
        ns.block_on(ns.links.set_mac(&s, mac))?;
    }
    Ok(())
}

pub(super) fn check_mtu(ctx: &Ctx<'_>, link: &str, mtu: u32) -> Result<Check, StepError> {
    let s = ctx.require(link)?;
    Ok(if s.mtu == mtu {
        Check::Done
    } else {
        Check::Act(Undo::SetMtu {
            link: link.to_string(),
            mtu: s.mtu,
        })
    })
}

pub(super) fn set_mtu(ctx: &mut Ctx<'_>, link: &str, mtu: u32) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    ctx.ns.block_on(ctx.ns.links.set_mtu(&s, mtu))?;
    ctx.changed(link, |s| s.mtu = mtu);
    Ok(())
}

/// Undo of an MTU change.
pub(super) fn undo_mtu(ns: &Ns, link: &str, mtu: u32) -> Result<(), StepError> {
    if let Some(s) = ns.block_on(ns.links.state(link))?.filter(|s| s.mtu != mtu) {
        ns.block_on(ns.links.set_mtu(&s, mtu))?;
    }
    Ok(())
}
