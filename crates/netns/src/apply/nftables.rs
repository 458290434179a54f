//! The nftables step: an interface's ruleset loaded in one transaction
//! ([`Undo::Nft`]: a snapshot of the tables it touches, as they were before).
//!
//! The snapshot is taken once, when the step first runs; a step the journal already has
//! (a re-run after a kill) keeps its recorded snapshot and is done when the ruleset is
//! loaded. Undo unloads the ruleset and puts the snapshot back.

use netbind_plan::nftables::NftRuleset;

use super::ctx::Check;
use super::step::StepError;
use crate::journal::Undo;
use crate::nft::{Nft, TableBefore};

/// `recorded`: the undo the journal holds for this step, if any.
pub(super) fn check(n: &NftRuleset, recorded: Option<&Undo>) -> Result<Check, StepError> {
    if let Some(Undo::Nft { tables }) = recorded {
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

pub(super) fn act(n: &NftRuleset) -> Result<(), StepError> {
    Ok(Nft::load(n)?)
}

pub(super) fn undo(tables: &[TableBefore]) -> Result<(), StepError> {
    Ok(Nft::unload(tables)?)
}
