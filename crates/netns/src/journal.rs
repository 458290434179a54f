//! The state directory: what `up` changed, so that `down` can undo exactly that.
//!
//! Files:
//! - `journal.json`: JSON lines. The first line is the [`Header`] (the fingerprint of the
//!   plan it belongs to, and its layout: per interface and [`Part`], which step numbers
//!   and what digest — for hot-plugging); each further line is a [`Record`]: an [`Entry`] for a step that
//!   is about to change something, with the [`Undo`] that puts back what the step found;
//!   `undone` when an entry has been undone (rollback, `down`); `complete` when every
//!   step ran. An entry is appended — one `write(2)` of one line — *before* its step
//!   acts, so whatever a SIGKILL interrupts is already recorded; a last line cut short
//!   can only be a record whose step never acted, and is ignored. Appending keeps every
//!   step O(1) (rewriting the whole journal per step made 32 interfaces quadratic).
//!   When a journal is opened again it is compacted: header and live entries written to
//!   `journal.json.tmp`, then renamed over it, so readers never see a torn file.
//! - `podview.json`: the pod view as CNI left it, saved by `netbind up` before the first
//!   change (temp file, rename); later runs plan from it, not from the namespace they
//!   already changed; a later run adds the links CNI made since (a hot-plugged network).
//! - `plan.json`: the plan the user-mode engines read.
//! - `served/<interface>`: the PID of the `netbind up` serving that interface's DHCP/RA
//!   and engine, so that an `up` after a hot-plug serves only what nobody serves.
//! - `engines/<interface>.stats`: the counters of that interface's user-mode engine
//!   (`name value` lines, rewritten by the engine every second and at exit), for
//!   `netbind status`.
//! - `lock`: held (flock) while an `up` or `down` changes the namespace, so two of them
//!   on one state dir take turns.
//!
//! No fsync: the journal describes kernel state (links, addresses, rules) that does not
//! survive a crash of the machine, while the page cache does survive the death of the
//! process — which is the failure the journal is for. The default state dir,
//! `/run/netbind`, is a tmpfs on a node anyway.
//!
//! What holds: the journal only ever names things netbind changed; anything it does not
//! name is left alone by `down`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use netbind_plan::PodView;
use serde::{Deserialize, Serialize};

use crate::link::LinkConfig;
use crate::nft::TableBefore;

pub const JOURNAL: &str = "journal.json";
pub const POD_VIEW: &str = "podview.json";
/// Who starts the guest (`qemu`, `libvirt`): what the first `up` was told, which the
/// later ones of the VM keep to.
pub const LAUNCHER: &str = "launcher";
/// The plan the user-mode engines read (written by `netbind up` when it starts them).
pub const PLAN: &str = "plan.json";
/// One file per served interface, holding the PID of the `netbind up` serving it.
pub const SERVED: &str = "served";
/// The user-mode engines' counters, one file per interface.
pub const ENGINES: &str = "engines";
/// Locked while an `up` or `down` changes the namespace: two at once would each append to
/// a journal the other may replace.
pub const LOCK: &str = "lock";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create state directory {path} (give a writable --state-dir)")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path} (is the state directory writable and not full?)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged or from another netbind version; inspect it, undo by hand, then remove it"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The first line of `journal.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub version: u32,
    pub plan: String,
    pub object: String,
    pub netns: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layout: Vec<Span>,
}

/// Where one part of an interface's steps sits in the numbering of the plan a journal
/// belongs to, and a digest of that part: what lets a later plan tell the parts it keeps
/// (same digest) from those it drops or changes (see `apply::replan`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub interface: String,
    pub part: Part,
    /// sha256 of the part's plan (JSON).
    pub print: String,
    /// Its first step number (1-based) and how many steps it has.
    pub first: usize,
    pub count: usize,
}

/// The parts of an interface's steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Part {
    Links,
    Sysctls,
    Nftables,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Links => "links",
            Part::Sysctls => "sysctls",
            Part::Nftables => "nftables",
        }
    }
}

impl Span {
    pub fn holds(&self, step: usize) -> bool {
        (self.first..self.first.saturating_add(self.count)).contains(&step)
    }
}

/// Every other line of `journal.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Record {
    Entry(Entry),
    /// The entry of this step was undone.
    Undone(usize),
    Complete,
}

/// The journal as read: the header with the live entries folded from the records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Journal {
    pub version: u32,
    /// sha256 of the plan's JSON.
    pub plan: String,
    pub object: String,
    pub netns: String,
    /// Every step ran to the end at least once.
    pub complete: bool,
    pub entries: Vec<Entry>,
    /// Per interface of the plan: its steps and digest (empty in journals of netbind
    /// versions before hot-plugging, whose plan cannot be changed in place).
    pub layout: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// 1-based step number in the plan (see [`crate::apply::steps`]).
    pub step: usize,
    pub interface: String,
    /// The step, in words.
    pub what: String,
    pub undo: Undo,
}

/// What puts back the state a step found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Undo {
    /// The step created this link; `kind` guards against deleting a stranger's link.
    DeleteLink {
        link: String,
        kind: String,
    },
    /// The step set the link down: set it up, then put back its addresses and routes.
    SetUpAndRestore {
        link: String,
        config: LinkConfig,
    },
    SetDown {
        link: String,
    },
    /// The step renamed `back` to `now`.
    Rename {
        now: String,
        back: String,
    },
    SetMac {
        link: String,
        mac: String,
    },
    SetMtu {
        link: String,
        mtu: u32,
    },
    /// The step removed these addresses (and with them routes).
    Restore {
        link: String,
        config: LinkConfig,
    },
    DeleteAddress {
        link: String,
        address: IpNet,
    },
    /// `None`: the link had no master.
    SetMaster {
        link: String,
        master: Option<String>,
    },
    SetLearning {
        link: String,
        learning: bool,
    },
    Sysctl {
        key: String,
        value: String,
    },
    Nft {
        tables: Vec<TableBefore>,
    },
}

impl Undo {
    /// Whether undoing this changes the link `name` (as it is named now or was before).
    pub fn touches(&self, name: &str) -> bool {
        match self {
            Undo::DeleteLink { link, .. }
            | Undo::SetUpAndRestore { link, .. }
            | Undo::SetDown { link }
            | Undo::SetMac { link, .. }
            | Undo::SetMtu { link, .. }
            | Undo::Restore { link, .. }
            | Undo::DeleteAddress { link, .. }
            | Undo::SetMaster { link, .. }
            | Undo::SetLearning { link, .. } => link == name,
            Undo::Rename { now, back } => now == name || back == name,
            Undo::Sysctl { .. } | Undo::Nft { .. } => false,
        }
    }
}

/// The state directory of one VM in one namespace.
#[derive(Debug)]
pub struct StateDir {
    pub dir: PathBuf,
    /// The journal, open for appending (one `write` per record instead of open, write,
    /// close); dropped whenever the file is replaced, as the handle would then point at
    /// the old one.
    appender: std::sync::Mutex<Option<File>>,
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), JournalError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let failed = |source| JournalError::Write {
        path: path.clone(),
        source,
    };
    let mut f = File::create(&tmp).map_err(failed)?;
    f.write_all(bytes).map_err(failed)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(failed)
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

impl Journal {
    pub fn header(&self) -> Header {
        Header {
            version: self.version,
            plan: self.plan.clone(),
            object: self.object.clone(),
            netns: self.netns.clone(),
            layout: self.layout.clone(),
        }
    }

    /// The journal as its compacted file: header, live entries, `complete`.
    pub fn to_lines(&self) -> Vec<u8> {
        let mut out = line(&self.header());
        for e in &self.entries {
            out.extend(line(&Record::Entry(e.clone())));
        }
        if self.complete {
            out.extend(line(&Record::Complete));
        }
        out
    }

    /// Reads the file's lines; a last line that does not parse was cut short by a kill.
    pub fn from_lines(path: &Path, text: &str) -> Result<Journal, JournalError> {
        let parse = |source| JournalError::Parse {
            path: path.to_path_buf(),
            source,
        };
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
        let first = lines.next().unwrap_or_default();
        let h: Header = serde_json::from_str(first).map_err(parse)?;
        let mut j = Journal {
            version: h.version,
            plan: h.plan,
            object: h.object,
            netns: h.netns,
            complete: false,
            entries: Vec::new(),
            layout: h.layout,
        };
        while let Some(l) = lines.next() {
            let record: Record = match serde_json::from_str(l) {
                Ok(r) => r,
                Err(_) if lines.peek().is_none() && !text.ends_with('\n') => break,
                Err(source) => return Err(parse(source)),
            };
            match record {
                Record::Entry(e) => {
                    j.entries.retain(|x| x.step != e.step);
                    j.entries.push(e);
                    j.complete = false;
                }
                Record::Undone(step) => {
                    j.entries.retain(|x| x.step != step);
                    j.complete = false;
                }
                Record::Complete => j.complete = true,
            }
        }
        Ok(j)
    }
}

impl Journal {
    /// The pod view to plan from on a later run: the saved one (the namespace as CNI left
    /// it before the first `up`), where every link this journal changes stays as saved
    /// (netbind has changed it since), and every other link is taken from `live` with its
    /// routes — a network hot-plugged since, or one unplugged and plugged again (Multus
    /// reuses the name with a new MAC and address). A live link is CNI's when this journal
    /// neither created it nor renamed a link to its name.
    pub fn with_hotplugged_links(&self, saved: &PodView, live: &PodView) -> PodView {
        let made = |name: &str| {
            self.entries.iter().any(|e| match &e.undo {
                Undo::DeleteLink { link, .. } => link == name,
                Undo::Rename { now, .. } => now == name,
                _ => false,
            })
        };
        let changed = |name: &str| self.entries.iter().any(|e| e.undo.touches(name));
        let mut view = saved.clone();
        for link in &live.links {
            if made(&link.name) || changed(&link.name) {
                continue;
            }
            view.links.retain(|l| l.name != link.name);
            view.routes.retain(|r| r.dev != link.name);
            view.links.push(link.clone());
            view.routes
                .extend(live.routes.iter().filter(|r| r.dev == link.name).cloned());
        }
        view
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, JournalError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| JournalError::Parse {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JournalError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir {
            dir: dir.into(),
            appender: std::sync::Mutex::new(None),
        }
    }

    pub fn create(&self) -> Result<(), JournalError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| JournalError::CreateDir {
            path: self.dir.clone(),
            source,
        })
    }

    pub fn journal(&self) -> Result<Option<Journal>, JournalError> {
        let path = self.dir.join(JOURNAL);
        match std::fs::read_to_string(&path) {
            Ok(text) => Journal::from_lines(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JournalError::Read { path, source }),
        }
    }

    /// Replaces the journal file with the compacted `journal` (temp file, rename).
    pub fn store(&self, journal: &Journal) -> Result<(), JournalError> {
        self.close_appender();
        write_atomically(&self.dir, JOURNAL, &journal.to_lines())
    }

    /// Writes the compacted journal unless the file already holds exactly that.
    pub fn compact(&self, journal: &Journal) -> Result<(), JournalError> {
        let bytes = journal.to_lines();
        if std::fs::read(self.dir.join(JOURNAL)).is_ok_and(|now| now == bytes) {
            return Ok(());
        }
        self.close_appender();
        write_atomically(&self.dir, JOURNAL, &bytes)
    }

    /// Appends one record with a single write.
    pub fn append(&self, record: &Record) -> Result<(), JournalError> {
        let path = self.dir.join(JOURNAL);
        let failed = |source| JournalError::Write {
            path: path.clone(),
            source,
        };
        let mut appender = self.appender.lock().unwrap_or_else(|e| e.into_inner());
        let f = match appender.take() {
            Some(f) => appender.insert(f),
            None => appender.insert(
                OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(failed)?,
            ),
        };
        f.write_all(&line(record)).map_err(failed)
    }

    fn close_appender(&self) {
        *self.appender.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn pod_view(&self) -> Result<Option<PodView>, JournalError> {
        read_json(&self.dir.join(POD_VIEW))
    }

    /// The launcher an earlier `up` of the VM recorded ([`LAUNCHER`]).
    pub fn launcher(&self) -> Result<Option<String>, JournalError> {
        let path = self.dir.join(LAUNCHER);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JournalError::Read { path, source }),
        }
    }

    pub fn save_launcher(&self, launcher: &str) -> Result<(), JournalError> {
        self.create()?;
        write_atomically(&self.dir, LAUNCHER, format!("{launcher}\n").as_bytes())
    }

    pub fn save_pod_view(&self, view: &PodView) -> Result<(), JournalError> {
        self.create()?;
        let bytes = serde_json::to_vec_pretty(view).unwrap_or_default();
        write_atomically(&self.dir, POD_VIEW, &bytes)
    }

    /// Waits for, then holds (until the returned guard drops), the state dir's lock.
    pub fn lock(&self) -> Result<nix::fcntl::Flock<File>, JournalError> {
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| JournalError::Write {
                path: path.clone(),
                source,
            })?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            JournalError::Write {
                path,
                source: e.into(),
            }
        })
    }

    /// The PID of the live `netbind up` that serves `interface`'s services, if any: after
    /// a hot-plug, the `up` that plugged an interface serves it and the earlier one keeps
    /// serving the rest. A PID whose process is gone, or is not a `netbind up` (the PID
    /// was reused), does not count.
    pub fn server_of(&self, interface: &str) -> Option<u32> {
        let pid = self.recorded_server(interface)?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let mut args = cmdline.split(|b| *b == 0);
        let exe = args.next()?;
        let is_up = exe.ends_with(b"netbind") && args.next() == Some(b"up".as_slice());
        // Our own PID here is a record from an earlier life (a restart in a new PID
        // namespace can hand out the same number): nobody serves.
        (is_up && pid != std::process::id()).then_some(pid)
    }

    /// The live `netbind up`s serving interfaces of this state dir (each PID once).
    pub fn live_servers(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(SERVED)) else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = entries
            .filter_map(Result::ok)
            .filter_map(|e| self.server_of(&e.file_name().to_string_lossy()))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Where the user-mode engine of `interface` keeps its counters.
    pub fn engine_stats_path(&self, interface: &str) -> PathBuf {
        self.dir.join(ENGINES).join(format!("{interface}.stats"))
    }

    /// The last counters the user-mode engine of `interface` wrote, if any.
    pub fn engine_stats(&self, interface: &str) -> Option<std::collections::BTreeMap<String, u64>> {
        let text = std::fs::read_to_string(self.engine_stats_path(interface)).ok()?;
        Some(
            text.lines()
                .filter_map(|l| {
                    let (name, value) = l.split_once(' ')?;
                    Some((name.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The PID the `served/` record of `interface` names, live or not.
    fn recorded_server(&self, interface: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join(SERVED).join(interface)).ok()?;
        text.trim().parse().ok()
    }

    /// Forgets whoever serves `interface`: its links were undone (unplugged, or made anew),
    /// so what served them serves nothing any more, and the next serving `up` takes it.
    pub fn forget_server(&self, interface: &str) {
        let _ = std::fs::remove_file(self.dir.join(SERVED).join(interface));
    }

    /// Records this process as the server of `interfaces`.
    pub fn serve(&self, interfaces: &[String]) -> Result<(), JournalError> {
        let dir = self.dir.join(SERVED);
        std::fs::create_dir_all(&dir).map_err(|source| JournalError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let pid = std::process::id().to_string();
        for name in interfaces {
            write_atomically(&dir, name, pid.as_bytes())?;
        }
        Ok(())
    }

    /// Forgets this process as a server (best effort, at exit). When `down` already ran
    /// while this process served, the state dir is empty now and goes too.
    pub fn unserve(&self, interfaces: &[String]) {
        for name in interfaces {
            // Not `server_of`, which takes a record of our own PID for a stale one.
            if self.recorded_server(name) == Some(std::process::id()) {
                let _ = std::fs::remove_file(self.dir.join(SERVED).join(name));
            }
        }
        let _ = std::fs::remove_dir(self.dir.join(SERVED));
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Removes netbind's files and the directory itself (when empty), then empty parents
    /// up to two levels (`/run/netbind/<namespace>/<vm>`).
    pub fn remove(&self) -> Result<(), JournalError> {
        self.close_appender();
        // Both hold only netbind's records (a serving `up` that outlives this finds its
        // record gone, which is what it would remove anyway).
        for sub in [SERVED, ENGINES] {
            let path = self.dir.join(sub);
            // Twice: an engine still running may write a file between the two.
            for _ in 0..2 {
                if let Ok(files) = std::fs::read_dir(&path) {
                    for f in files.flatten() {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
                if std::fs::remove_dir(&path).is_ok() {
                    break;
                }
            }
        }
        for name in [JOURNAL, POD_VIEW, PLAN, LAUNCHER, LOCK] {
            for n in [name.to_string(), format!("{name}.tmp")] {
                let path = self.dir.join(n);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(JournalError::Write { path, source }),
                }
            }
        }
        let mut dir = Some(self.dir.as_path());
        for _ in 0..3 {
            let Some(d) = dir else { break };
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_journal_reads_back_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("ns/vm"));
        state.create().unwrap();
        assert_eq!(state.journal().unwrap(), None);
        let j = Journal {
            version: VERSION,
            plan: "abc".into(),
            object: "VirtualMachineInstance/ns/vm".into(),
            netns: "pod".into(),
            complete: false,
            layout: vec![],
            entries: vec![Entry {
                step: 1,
                interface: "default".into(),
                what: "create bridge k6t-eth0".into(),
                undo: Undo::DeleteLink {
                    link: "k6t-eth0".into(),
                    kind: "bridge".into(),
                },
            }],
        };
        state.store(&j).unwrap();
        assert_eq!(state.journal().unwrap(), Some(j));
        assert!(!state.dir.join("journal.json.tmp").exists());
    }

    #[test]
    fn an_up_that_ends_takes_its_served_records_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("ns/vm"));
        state.create().unwrap();
        let names = ["default".to_string()];
        state.serve(&names).unwrap();
        assert_eq!(state.recorded_server("default"), Some(std::process::id()));
        state.unserve(&names);
        assert_eq!(state.recorded_server("default"), None);
        assert!(!state.dir.join(SERVED).exists());
    }

    #[test]
    fn remove_takes_the_served_records_and_the_engines_counters() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("ns/vm"));
        state.create().unwrap();
        state.serve(&["default".to_string()]).unwrap();
        std::fs::create_dir_all(state.dir.join(ENGINES)).unwrap();
        std::fs::write(
            state.engine_stats_path("default"),
            "flows_now 3\nflows_cap 9\n",
        )
        .unwrap();
        let stats = state.engine_stats("default").unwrap();
        assert_eq!((stats["flows_now"], stats["flows_cap"]), (3, 9));
        state.remove().unwrap();
        assert!(!tmp.path().join("ns").exists());
    }

    #[test]
    fn a_damaged_journal_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        std::fs::write(tmp.path().join(JOURNAL), b"{not json").unwrap();
        let err = state.journal().unwrap_err();
        assert!(err.to_string().contains("journal.json"), "{err}");
    }

    #[test]
    fn appended_records_fold_into_live_entries_and_a_cut_last_line_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let mut j = journal_of(vec![]);
        state.store(&j).unwrap();
        let entry = |step| Entry {
            step,
            interface: "i".into(),
            what: format!("step {step}"),
            undo: Undo::SetDown { link: "x".into() },
        };
        for step in 1..=3 {
            state.append(&Record::Entry(entry(step))).unwrap();
        }
        state.append(&Record::Undone(3)).unwrap();
        state.append(&Record::Complete).unwrap();
        j.entries = vec![entry(1), entry(2)];
        j.complete = true;
        assert_eq!(state.journal().unwrap(), Some(j.clone()));

        let path = tmp.path().join(JOURNAL);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"entry\": {\"step\": 4, \"inter");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            state.journal().unwrap(),
            Some(j.clone()),
            "the cut record never acted"
        );

        // Compacted before anything is appended again, the cut line goes for good.
        state.compact(&j).unwrap();
        state.append(&Record::Undone(2)).unwrap();
        j.entries.pop();
        j.complete = false;
        assert_eq!(state.journal().unwrap(), Some(j));
    }

    /// A journal of plan `p` for object `o` in namespace `n`, holding `entries`.
    fn journal_of(entries: Vec<Entry>) -> Journal {
        Journal {
            version: VERSION,
            plan: "p".into(),
            object: "o".into(),
            netns: "n".into(),
            complete: false,
            entries,
            layout: vec![],
        }
    }

    fn link(name: &str, mac: &str) -> netbind_plan::podview::PodLink {
        netbind_plan::podview::PodLink {
            name: name.into(),
            mac: Some(mac.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_later_view_takes_what_netbind_left_alone_from_the_namespace() {
        let saved = PodView {
            links: vec![
                link("eth0", "0a:00:00:00:00:01"),
                link("pod1", "0a:00:00:00:00:02"),
            ],
            ..PodView::default()
        };
        // `pod1` was unplugged, then plugged again: same name, new MAC; `pod2` is new;
        // `eth0` is the masquerade link netbind never changes; `k6t-pod3` is netbind's.
        let live = PodView {
            links: vec![
                link("eth0", "0a:00:00:00:00:01"),
                link("pod1", "0a:00:00:00:00:09"),
                link("pod2", "0a:00:00:00:00:03"),
                link("k6t-pod3", "02:00:00:00:00:04"),
            ],
            ..PodView::default()
        };
        let journal = journal_of(vec![Entry {
            step: 1,
            interface: "c".into(),
            what: "create bridge k6t-pod3".into(),
            undo: Undo::DeleteLink {
                link: "k6t-pod3".into(),
                kind: "bridge".into(),
            },
        }]);
        let view = journal.with_hotplugged_links(&saved, &live);
        let macs: Vec<(&str, &str)> = view
            .links
            .iter()
            .map(|l| (l.name.as_str(), l.mac.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            macs,
            [
                ("eth0", "0a:00:00:00:00:01"),
                ("pod1", "0a:00:00:00:00:09"),
                ("pod2", "0a:00:00:00:00:03")
            ]
        );
    }

    #[test]
    fn a_link_netbind_changed_stays_as_saved() {
        let saved = PodView {
            links: vec![link("eth0", "0a:00:00:00:00:01")],
            ..PodView::default()
        };
        let live = PodView {
            links: vec![
                link("eth0", "0a:00:00:00:00:01"),
                link("eth0-nic", "02:00:00:00:00:07"),
            ],
            ..PodView::default()
        };
        let journal = journal_of(vec![Entry {
            step: 2,
            interface: "default".into(),
            what: "rename eth0 to eth0-nic".into(),
            undo: Undo::Rename {
                now: "eth0-nic".into(),
                back: "eth0".into(),
            },
        }]);
        assert_eq!(journal.with_hotplugged_links(&saved, &live), saved);
    }

    #[test]
    fn remove_takes_the_directory_and_its_empty_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("netbind/ns/vm"));
        state.save_pod_view(&PodView::default()).unwrap();
        state.remove().unwrap();
        assert!(!tmp.path().join("netbind/ns").exists());
        assert!(tmp.path().exists());
    }
}
