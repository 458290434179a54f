//! nftables through nf_tables netlink, from the namespace thread (no `nft` process).
//!
//! How it works: every call opens a NETLINK_NETFILTER socket on the calling thread; on the
//! thread that entered the pod's namespace that socket belongs to the pod's namespace
//! ([`sock`]). A ruleset is compiled into one batch — `NFNL_MSG_BATCH_BEGIN`, a message
//! per table, chain, anonymous set and rule, `NFNL_MSG_BATCH_END` ([`wire`]) — which the
//! kernel applies as one transaction: all of it or none. Each message asks for an
//! acknowledgement, so a refusal names the table, chain or rule it concerns (with the
//! rule's nft text) and the kernel's reason.
//!
//! Ownership without markers: before loading, [`Nft::snapshot`] records for every table
//! the ruleset touches whether it existed and the highest object handle in it (from
//! `NFT_MSG_GETTABLE`/`GETCHAIN`/`GETRULE` dumps). Handles in a table only grow, so after
//! the load "ours" is exactly: the whole table when it did not exist, otherwise every
//! chain and rule with a handle above the recorded one. [`Nft::is_loaded`] and
//! [`Nft::unload`] use that record, so re-running after a crash can tell whether the
//! transaction happened, and `down` removes only what `up` added — a pod that already had
//! a `nat` table (Istio's init container makes one) keeps it. Anonymous sets belong to
//! their rule and go with it.

mod sock;
mod wire;

use netbind_plan::nftables::NftRuleset;
use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, NfTablesMessage, RuleAttribute, RuleMessage, TableAttribute,
    TableMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
use serde::{Deserialize, Serialize};

use sock::{NfSocket, SockError};
use wire::Batch;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot talk to nf_tables over netlink (is the nf_tables module available?)")]
    Socket(#[source] std::io::Error),
    #[error("nf_tables refused {what}: {reason}; nothing of the transaction was applied")]
    Rejected {
        what: String,
        errno: i32,
        reason: String,
    },
    #[error("nf_tables answered with something netbind does not understand: {0}")]
    Output(String),
    #[error("the ruleset cannot be loaded: {0}")]
    Invalid(String),
}

/// One table of a ruleset, as it was before netbind loaded into it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TableBefore {
    pub family: String,
    pub name: String,
    pub existed: bool,
    /// Highest chain/rule handle in the table before the load (0 when it did not exist).
    pub max_handle: u64,
}

#[derive(Debug, Default)]
struct Listing {
    /// (family, table) present.
    tables: Vec<(String, String)>,
    /// (family, table, chain, handle) of chains.
    chains: Vec<(String, String, String, u64)>,
    /// (family, table, chain, handle) of rules.
    rules: Vec<(String, String, String, u64)>,
}

pub struct Nft;

/// Batches start far above the sequence numbers of dumps on the same socket.
const BATCH_SEQ: u32 = 1 << 20;

fn open() -> Result<NfSocket, NftError> {
    NfSocket::open().map_err(|e| sock_error(e, None))
}

fn sock_error(e: SockError, batch: Option<&Batch>) -> NftError {
    match e {
        SockError::Io(e) => NftError::Socket(e),
        SockError::Decode(s) => NftError::Output(s),
        SockError::Nack { seq, error } => NftError::Rejected {
            what: batch
                .and_then(|b| b.what(seq))
                .unwrap_or("the batch")
                .to_string(),
            errno: error.raw_os_error().unwrap_or(0),
            reason: error.to_string(),
        },
    }
}

fn transact(sock: &mut NfSocket, batch: &mut Batch) -> Result<(), NftError> {
    sock.transact(batch).map_err(|e| sock_error(e, Some(batch)))
}

/// (family, table) of every table.
fn tables(sock: &mut NfSocket) -> Result<Vec<(String, String)>, NftError> {
    let msgs = sock
        .dump(NfTablesMessage::GetTable(TableMessage {
            attributes: vec![],
        }))
        .map_err(|e| sock_error(e, None))?;
    let mut out = Vec::new();
    for m in msgs {
        let fam = wire::family_name(m.header.family.into());
        if let NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)) = m.inner {
            for a in t.attributes {
                if let TableAttribute::Name(n) = a {
                    out.push((fam.clone(), n));
                }
            }
        }
    }
    Ok(out)
}

fn listing(sock: &mut NfSocket) -> Result<Listing, NftError> {
    let mut out = Listing {
        tables: tables(sock)?,
        ..Listing::default()
    };
    let chains = sock
        .dump(NfTablesMessage::GetChain(ChainMessage {
            attributes: vec![],
        }))
        .map_err(|e| sock_error(e, None))?;
    for m in chains {
        let fam = wire::family_name(m.header.family.into());
        if let NetfilterMessageInner::NfTables(NfTablesMessage::NewChain(c)) = m.inner {
            let (mut t, mut n, mut h) = (String::new(), String::new(), 0);
            for a in c.attributes {
                match a {
                    ChainAttribute::Table(s) => t = s,
                    ChainAttribute::Name(s) => n = s,
                    ChainAttribute::Handle(v) => h = v,
                    _ => {}
                }
            }
            out.chains.push((fam, t, n, h));
        }
    }
    let rules = sock
        .dump(NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }))
        .map_err(|e| sock_error(e, None))?;
    for m in rules {
        out.rules.extend(rule_place(m));
    }
    Ok(out)
}

fn rule_place(m: NetfilterMessage) -> Option<(String, String, String, u64)> {
    let fam = wire::family_name(m.header.family.into());
    let NetfilterMessageInner::NfTables(NfTablesMessage::NewRule(r)) = m.inner else {
        return None;
    };
    let (mut t, mut c, mut h) = (String::new(), String::new(), 0);
    for a in r.attributes {
        match a {
            RuleAttribute::Table(s) => t = s,
            RuleAttribute::Chain(s) => c = s,
            RuleAttribute::Handle(v) => h = v,
            _ => {}
        }
    }
    Some((fam, t, c, h))
}

fn family_number(name: &str) -> Result<u8, NftError> {
    wire::family_from_name(name)
        .ok_or_else(|| NftError::Invalid(format!("unknown nftables family {name:?}")))
}

fn table_msg(name: &str) -> TableMessage {
    TableMessage {
        attributes: vec![TableAttribute::Name(name.to_string())],
    }
}

impl Nft {
    /// What the tables named in `ruleset` look like now.
    pub fn snapshot(ruleset: &NftRuleset) -> Result<Vec<TableBefore>, NftError> {
        let mut sock = open()?;
        let present = tables(&mut sock)?;
        let wanted = |family: &str, name: &str| {
            ruleset
                .tables
                .iter()
                .any(|t| t.family.as_str() == family && t.name == name)
        };
        // Handles are needed only when a table we add to is already there.
        let now = if present.iter().any(|(f, n)| wanted(f, n)) {
            listing(&mut sock)?
        } else {
            Listing {
                tables: present,
                ..Listing::default()
            }
        };
        let mut out: Vec<TableBefore> = Vec::new();
        for t in &ruleset.tables {
            let (family, name) = (t.family.as_str().to_string(), t.name.clone());
            if out.iter().any(|b| b.family == family && b.name == name) {
                continue;
            }
            let existed = now.tables.iter().any(|(f, n)| *f == family && *n == name);
            let max_handle = now
                .chains
                .iter()
                .chain(now.rules.iter())
                .filter(|(f, t, _, _)| *f == family && *t == name)
                .map(|(_, _, _, h)| *h)
                .max()
                .unwrap_or(0);
            out.push(TableBefore {
                family,
                name,
                existed,
                max_handle,
            });
        }
        Ok(out)
    }

    /// Whether the load recorded by `before` has happened.
    pub fn is_loaded(before: &[TableBefore]) -> Result<bool, NftError> {
        let mut sock = open()?;
        let now = if before.iter().all(|b| !b.existed) {
            Listing {
                tables: tables(&mut sock)?,
                ..Listing::default()
            }
        } else {
            listing(&mut sock)?
        };
        Ok(before.iter().any(|b| {
            if !b.existed {
                return now
                    .tables
                    .iter()
                    .any(|(f, n)| *f == b.family && *n == b.name);
            }
            now.chains
                .iter()
                .chain(now.rules.iter())
                .any(|(f, t, _, h)| *f == b.family && *t == b.name && *h > b.max_handle)
        }))
    }

    /// Loads a ruleset in one transaction.
    pub fn load(ruleset: &NftRuleset) -> Result<(), NftError> {
        let mut batch = Batch::new(BATCH_SEQ);
        wire::ruleset(&mut batch, ruleset).map_err(|e| NftError::Invalid(e.to_string()))?;
        if batch.len() == 0 {
            return Ok(());
        }
        let mut sock = open()?;
        transact(&mut sock, &mut batch)
    }

    /// Removes what the load recorded by `before` added; nothing when it is not there.
    pub fn unload(before: &[TableBefore]) -> Result<(), NftError> {
        let mut sock = open()?;
        let mut batch = Batch::new(BATCH_SEQ);
        if before.iter().all(|b| !b.existed) {
            // Tables that are wholly ours: add (a no-op when present) then delete, in one
            // transaction, needs no listing and cannot fail on a missing table.
            for b in before {
                let fam = family_number(&b.family)?;
                let what = format!("table {} {}", b.family, b.name);
                batch.push(
                    fam,
                    NLM_F_CREATE,
                    NfTablesMessage::NewTable(table_msg(&b.name)),
                    what.clone(),
                );
                batch.push(
                    fam,
                    0,
                    NfTablesMessage::DeleteTable(table_msg(&b.name)),
                    format!("deleting {what}"),
                );
            }
            if batch.len() == 0 {
                return Ok(());
            }
            return transact(&mut sock, &mut batch);
        }
        let now = listing(&mut sock)?;
        for b in before {
            let fam = family_number(&b.family)?;
            let present = now
                .tables
                .iter()
                .any(|(f, n)| *f == b.family && *n == b.name);
            if !present {
                continue;
            }
            if !b.existed {
                batch.push(
                    fam,
                    0,
                    NfTablesMessage::DeleteTable(table_msg(&b.name)),
                    format!("deleting table {} {}", b.family, b.name),
                );
                continue;
            }
            for (f, t, c, h) in &now.rules {
                if *f == b.family && *t == b.name && *h > b.max_handle {
                    batch.push(
                        fam,
                        0,
                        NfTablesMessage::DeleteRule(RuleMessage {
                            attributes: vec![
                                RuleAttribute::Table(t.clone()),
                                RuleAttribute::Chain(c.clone()),
                                RuleAttribute::Handle(*h),
                            ],
                        }),
                        format!("deleting rule handle {h} of chain {f} {t} {c}"),
                    );
                }
            }
            for (f, t, c, h) in &now.chains {
                if *f == b.family && *t == b.name && *h > b.max_handle {
                    batch.push(
                        fam,
                        0,
                        NfTablesMessage::DeleteChain(ChainMessage {
                            attributes: vec![
                                ChainAttribute::Table(t.clone()),
                                ChainAttribute::Name(c.clone()),
                            ],
                        }),
                        format!("deleting chain {f} {t} {c}"),
                    );
                }
            }
        }
        if batch.len() == 0 {
            return Ok(());
        }
        transact(&mut sock, &mut batch)
    }
}
