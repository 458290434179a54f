//! nftables through the `nft` binary, run from the namespace thread.
//!
//! How it works: a child process forked from a thread inherits that thread's network
//! namespace, so [`Nft`] spawns `nft` on the thread that entered the pod's namespace.
//! A ruleset goes in as libnftables JSON on stdin (`nft -j -f -`): one batch, one kernel
//! transaction — all of it is loaded or none.
//!
//! Ownership without markers: before loading, [`Nft::snapshot`] records for every table
//! the ruleset touches whether it existed and the highest object handle in it. Handles in
//! a table only grow, so after the load "ours" is exactly: the whole table when it did
//! not exist, otherwise every chain and rule with a handle above the recorded one.
//! [`Nft::is_loaded`] and [`Nft::unload`] use that record, so re-running after a crash
//! can tell whether the transaction happened, and `down` removes only what `up` added —
//! a pod that already had a `nat` table (Istio's init container makes one) keeps it.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run `nft` (apt-get install nftables)")]
    Spawn(#[source] std::io::Error),
    #[error("`nft {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("`nft -j list ruleset` printed JSON netbind does not understand: {0}")]
    Output(String),
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

fn run(args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn listing() -> Result<Listing, NftError> {
    parse_listing(&run(&["-j", "-a", "list", "ruleset"], None)?)
}

/// Only the tables (a much shorter answer than the whole ruleset).
fn tables() -> Result<Vec<(String, String)>, NftError> {
    Ok(parse_listing(&run(&["-j", "list", "tables"], None)?)?.tables)
}

fn parse_listing(text: &str) -> Result<Listing, NftError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| NftError::Output(e.to_string()))?;
    let mut out = Listing::default();
    let Some(items) = doc.get("nftables").and_then(Value::as_array) else {
        return Err(NftError::Output("no \"nftables\" array".into()));
    };
    for item in items {
        if let Some(t) = item.get("table") {
            out.tables.push((s(t, "family"), s(t, "name")));
        } else if let Some(c) = item.get("chain") {
            let h = c.get("handle").and_then(Value::as_u64).unwrap_or(0);
            out.chains
                .push((s(c, "family"), s(c, "table"), s(c, "name"), h));
        } else if let Some(r) = item.get("rule") {
            let h = r.get("handle").and_then(Value::as_u64).unwrap_or(0);
            out.rules
                .push((s(r, "family"), s(r, "table"), s(r, "chain"), h));
        }
    }
    Ok(out)
}

impl Nft {
    /// What the tables named in `ruleset` (libnftables JSON) look like now.
    pub fn snapshot(ruleset: &Value) -> Result<Vec<TableBefore>, NftError> {
        let present = tables()?;
        let wanted = |family: &str, name: &str| {
            ruleset
                .get("nftables")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c.get("add")
                        .and_then(|a| a.get("table"))
                        .is_some_and(|t| s(t, "family") == family && s(t, "name") == name)
                })
        };
        // Handles are needed only when a table we add to is already there.
        let now = if present.iter().any(|(f, n)| wanted(f, n)) {
            listing()?
        } else {
            Listing {
                tables: present,
                ..Listing::default()
            }
        };
        let mut out: Vec<TableBefore> = Vec::new();
        for cmd in ruleset
            .get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(t) = cmd.get("add").and_then(|a| a.get("table")) else {
                continue;
            };
            let (family, name) = (s(t, "family"), s(t, "name"));
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
        let now = listing()?;
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
    pub fn load(ruleset: &Value) -> Result<(), NftError> {
        run(&["-j", "-f", "-"], Some(&ruleset.to_string())).map(drop)
    }

    /// Removes what the load recorded by `before` added; nothing when it is not there.
    pub fn unload(before: &[TableBefore]) -> Result<(), NftError> {
        if before.iter().all(|b| !b.existed) {
            // Tables that are wholly ours: `add` (a no-op when present) then `delete`, in
            // one transaction, needs no listing and cannot fail on a missing table.
            let mut cmds = Vec::new();
            for b in before {
                let t = json!({"table": {"family": b.family, "name": b.name}});
                cmds.push(json!({"add": t}));
                cmds.push(json!({"delete": t}));
            }
            return run(
                &["-j", "-f", "-"],
                Some(&json!({"nftables": cmds}).to_string()),
            )
            .map(drop);
        }
        let now = listing()?;
        let mut cmds = Vec::new();
        for b in before {
            let present = now
                .tables
                .iter()
                .any(|(f, n)| *f == b.family && *n == b.name);
            if !present {
                continue;
            }
            if !b.existed {
                cmds.push(json!({"delete": {"table": {"family": b.family, "name": b.name}}}));
                continue;
            }
            for (f, t, c, h) in &now.rules {
                if *f == b.family && *t == b.name && *h > b.max_handle {
                    cmds.push(json!({"delete": {"rule": {"family": f, "table": t, "chain": c, "handle": h}}}));
                }
            }
            for (f, t, c, h) in &now.chains {
                if *f == b.family && *t == b.name && *h > b.max_handle {
                    cmds.push(json!({"delete": {"chain": {"family": f, "table": t, "name": c}}}));
                }
            }
        }
        if cmds.is_empty() {
            return Ok(());
        }
        run(
            &["-j", "-f", "-"],
            Some(&json!({"nftables": cmds}).to_string()),
        )
        .map(drop)
    }
}
