//! Bridge port steps: enslaving a link to a bridge ([`Undo::SetMaster`]: the master it had
//! before, by name, or none) and setting a port's learning flag ([`Undo::SetLearning`]).
//!
//! A link just enslaved is forgotten in the run's picture (its bridge-port attributes are
//! new); the bridge may lower its MTU to the port's, but no later step of a run reads a
//! master's MTU. Learning on a link that is not a port is [`StepError::NotAPort`]. Undo
//! on a link that is gone does nothing; a former master that is gone means none.

use super::ctx::{Check, Ctx};
use super::step::StepError;
use crate::journal::Undo;
use crate::ns::Ns;

pub(super) fn check_master(ctx: &Ctx<'_>, link: &str, master: &str) -> Result<Check, StepError> {
    let s = ctx.require(link)?;
    let m = ctx.require(master)?;
    if s.controller == Some(m.index) {
        return Ok(Check::Done);
    }
    let old = match s.controller {
        Some(i) => ctx.ns.block_on(ctx.ns.links.name_of(i))?,
        None => None,
    };
    Ok(Check::Act(Undo::SetMaster {
        link: link.to_string(),
        master: old,
    }))
}

pub(super) fn set_master(ctx: &mut Ctx<'_>, link: &str, master: &str) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    let m = ctx.require(master)?;
    ctx.ns
        .block_on(ctx.ns.links.set_controller(&s, Some(m.index)))?;
    // The port's bridge-port attributes are new. The bridge may lower its
    // MTU to the port's, but no later step of a run reads a master's MTU.
    ctx.forget(link);
    Ok(())
}

/// Undo of an enslaving: the master from before, or none.
pub(super) fn undo_master(ns: &Ns, link: &str, master: Option<&str>) -> Result<(), StepError> {
    let state = |name: &str| ns.block_on(ns.links.state(name));
    if let Some(s) = state(link)? {
        let want = match master {
            Some(m) => state(m)?.map(|m| m.index),
            None => None,
        };
        if s.controller != want {
            ns.block_on(ns.links.set_controller(&s, want))?;
        }
    }
    Ok(())
}

pub(super) fn check_learning(
    ctx: &Ctx<'_>,
    link: &str,
    learning: bool,
) -> Result<Check, StepError> {
    let s = ctx.require(link)?;
    match s.learning {
        None => Err(StepError::NotAPort {
            link: link.to_string(),
        }),
        Some(l) if l == learning => Ok(Check::Done),
        Some(l) => Ok(Check::Act(Undo::SetLearning {
            link: link.to_string(),
            learning: l,
        })),
    }
}

pub(super) fn set_learning(ctx: &mut Ctx<'_>, link: &str, learning: bool) -> Result<(), StepError> {
    let s = ctx.require(link)?;
    ctx.ns.block_on(ctx.ns.links.set_learning(&s, learning))?;
    ctx.changed(link, |s| s.learning = Some(learning));
    Ok(())
}

/// Undo of a learning change.
pub(super) fn undo_learning(ns: &Ns, link: &str, learning: bool) -> Result<(), StepError> {
    if let Some(s) = ns
        .block_on(ns.links.state(link))?
        .filter(|s| s.learning.is_some_and(|l| l != learning))
    {
        ns.block_on(ns.links.set_learning(&s, learning))?;
    }
    Ok(())
}
