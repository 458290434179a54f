//! `netbind status`: what `up` recorded for a VM, read from its state dir alone (no
//! privileges beyond reading it), and what `up` with the manifest would change now.
//!
//! How it works: the journal's layout lists, per interface and part (links, sysctls,
//! nftables), the steps `up` planned; its entries are the changes kept for `down`; the
//! `served/` records name the `netbind up` serving each interface (counted only while that
//! process lives); `engines/` holds the counters of the user-mode engines, shown while
//! their `up` serves (after, they are the last an engine wrote). For "what would `up`
//! change", the manifest is planned against the pod view the first `up` saved and carried
//! over from the journal exactly as `up` would ([`netbind_netns::apply::replan`]),
//! without touching the namespace.

use anyhow::Context;
use netbind_netns::journal::{Journal, Part, StateDir};
use netbind_spec::{ClusterConfig, VmObject};

use crate::dataplane::{state_dir, the_object};
use crate::{Outcome, StatusArgs, StatusOutput, input, output};

/// `netbind status`: the state dir's journal and servers, per interface.
pub fn status(args: &StatusArgs) -> anyhow::Result<Outcome> {
    let cluster = input::cluster_config(args.cluster_config.as_deref())?;
    let obj = the_object(&args.file, &cluster)?;
    let dir = state_dir(args.state_dir.as_ref(), &obj);
    let state = StateDir::new(&dir);
    let Some(journal) = state.journal().context("reading the journal")? else {
        output::stderr(&format!(
            "netbind status: nothing recorded in {}\n",
            dir.display()
        ));
        return Ok(Outcome::Invalid);
    };
    let mut names: Vec<&str> = journal
        .layout
        .iter()
        .map(|s| s.interface.as_str())
        .collect();
    names.dedup();
    let interfaces: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let steps = |part: Part| {
                journal
                    .layout
                    .iter()
                    .find(|s| s.interface == *name && s.part == part)
                    .map_or(0, |s| s.count)
            };
            serde_json::json!({
                "name": name,
                "steps": {
                    "links": steps(Part::Links),
                    "sysctls": steps(Part::Sysctls),
                    "nftables": steps(Part::Nftables),
                },
                "changes": journal.entries.iter().filter(|e| e.interface == *name).count(),
                "servedBy": state.server_of(name),
                "engine": state
                    .server_of(name)
                    .and_then(|_| state.engine_stats(name))
                    .map(|stats| {
                        stats
                            .into_iter()
                            .map(|(k, v)| (camel_case(&k), serde_json::Value::from(v)))
                            .collect::<serde_json::Map<_, _>>()
                    }),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "object": journal.object,
        "netns": journal.netns,
        "stateDir": dir.display().to_string(),
        "complete": journal.complete,
        "changes": journal.entries.len(),
        "interfaces": interfaces,
        "pending": pending(&state, &obj, &cluster, &journal),
    });
    match args.output {
        StatusOutput::Json => output::stdout(&(serde_json::to_string_pretty(&doc)? + "\n")),
        StatusOutput::Table => output::stdout(&status_table(&doc)),
    }
    Ok(Outcome::Ok)
}

/// `flows_now` → `flowsNow`: the engine's counter names as the other keys are spelled.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// What `up` with this manifest would change now: the manifest planned against the saved
/// pod view and carried over from the journal as a hot-plug would be (a dry run of
/// `replan`). Unknown when there is no saved view or the manifest does not plan against
/// it — say, a network attached since `up`, which `up` finds in the namespace itself.
fn pending(
    state: &StateDir,
    obj: &VmObject,
    cluster: &ClusterConfig,
    journal: &Journal,
) -> serde_json::Value {
    use netbind_netns::apply::{fingerprint, layout, replan, steps};
    let unknown = |why: String| serde_json::json!({ "known": false, "why": why });
    let view = match state.pod_view() {
        Ok(Some(v)) => v,
        Ok(None) => return unknown("no saved pod view".into()),
        Err(e) => return unknown(format!("{:#}", anyhow::Error::new(e))),
    };
    let plan = match netbind_plan::plan(obj, cluster, &view) {
        Ok(p) => p,
        Err(e) => {
            return unknown(format!(
                "{e} (planned against the pod view saved by the first `up`; `up` also reads the namespace)"
            ));
        }
    };
    let layout = layout(&plan);
    if fingerprint(&layout) == journal.plan {
        return serde_json::json!({ "known": true, "inSync": true });
    }
    match replan(journal, &layout, &steps(&plan)) {
        Some(r) => serde_json::json!({
            "known": true,
            "inSync": false,
            "unplug": r.changes.unplugged,
            "plug": r.changes.plugged,
            "rework": r.changes.reworked,
        }),
        None => {
            unknown("the journal has no layout (written by a netbind without hot-plugging)".into())
        }
    }
}

fn status_table(doc: &serde_json::Value) -> String {
    let mut out = format!(
        "{} in {} ({})\n{}: {} change(s) recorded for `down`\n\n",
        doc["object"].as_str().unwrap_or_default(),
        doc["netns"].as_str().unwrap_or_default(),
        doc["stateDir"].as_str().unwrap_or_default(),
        if doc["complete"] == true {
            "complete"
        } else {
            "incomplete (an `up` stopped half-way: run it again, or `down`)"
        },
        doc["changes"],
    );
    out.push_str("interface        links  sysctls  nftables  changes  served by\n");
    for i in doc["interfaces"].as_array().into_iter().flatten() {
        let served = match i["servedBy"].as_u64() {
            Some(pid) => format!("netbind up, pid {pid}"),
            None => "-".to_string(),
        };
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or_default();
        out.push_str(&format!(
            "{:<16} {:>5}  {:>7}  {:>8}  {:>7}  {served}\n",
            i["name"].as_str().unwrap_or_default(),
            n(&i["steps"]["links"]),
            n(&i["steps"]["sysctls"]),
            n(&i["steps"]["nftables"]),
            n(&i["changes"]),
        ));
        let e = &i["engine"];
        if e.is_object() {
            out.push_str(&format!(
                "  user-mode engine: flows {}/{}; guest frames in {} (malformed {}), out {} \
                 (dropped {}); refused, table full {}\n",
                n(&e["flowsNow"]),
                n(&e["flowsCap"]),
                n(&e["rxFrames"]),
                n(&e["rxMalformed"]),
                n(&e["txFrames"]),
                n(&e["txDroppedFull"]),
                n(&e["refusedFull"]),
            ));
        }
    }
    let p = &doc["pending"];
    let list = |key: &str| {
        p[key]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    out.push('\n');
    if p["known"] != true {
        out.push_str(&format!(
            "`up` now: cannot tell ({})\n",
            p["why"].as_str().unwrap_or_default()
        ));
    } else if p["inSync"] == true {
        out.push_str("`up` now: nothing to change (in sync with the manifest)\n");
    } else {
        let parts: Vec<String> = [("unplug", "unplug"), ("plug", "plug"), ("rework", "rework")]
            .into_iter()
            .map(|(key, word)| (word, list(key)))
            .filter(|(_, l)| !l.is_empty())
            .map(|(word, l)| format!("{word} {l}"))
            .collect();
        if parts.is_empty() {
            out.push_str("`up` now would: renumber its journal (the steps moved; nothing in the pod changes)\n");
        } else {
            out.push_str(&format!("`up` now would: {}\n", parts.join("; ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counter_names_become_camel_case() {
        assert_eq!(super::camel_case("tx_dropped_full"), "txDroppedFull");
        assert_eq!(super::camel_case("flows"), "flows");
    }
}
