//! Reading what the user hands the binary: manifests, the cluster configuration, a pod
//! view file, a network-status file.
//!
//! Every reader is bounded ([`read::read_limited`]) so a huge or endless input (a 100 MB
//! file, `/dev/zero`) costs at most a few MiB. Failures become an [`InputError`] whose
//! message is meant to be printed as is: it starts with the file name, and for syntax
//! errors with `FILE:LINE:COLUMN:` followed by the offending source line and a caret.
//! Each error also knows its position and rule id for `validate --output json`
//! ([`InputError::record`]).

use std::fs::File;

use netbind_plan::PodView;
use netbind_spec::cluster::ClusterConfigError;
use netbind_spec::multus::{self, MultusError};
use netbind_spec::read::{self, Parsed, ReadError};
use netbind_spec::source::Pos;
use netbind_spec::{ClusterConfig, Document};

use crate::output::{self, Record};

/// What a user sees for the file name `-`.
pub const STDIN_NAME: &str = "<stdin>";

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: cannot read: {error}")]
    Open { file: String, error: std::io::Error },
    #[error("{}", located(file, error))]
    Manifest { file: String, error: ReadError },
    #[error("{}", located_config(file, error))]
    ClusterConfig {
        file: String,
        error: ClusterConfigError,
    },
    #[error("{file}: not a pod view: {path}: {message}")]
    PodView {
        file: String,
        path: String,
        message: String,
    },
    #[error("{file}: network-status is not UTF-8 text")]
    NetworkStatusText { file: String },
    #[error("{file}: {error}")]
    NetworkStatus { file: String, error: MultusError },
    #[error(
        "{file}: no VirtualMachine or VirtualMachineInstance found; netbind checks only these kinds"
    )]
    NoVm { file: String },
}

impl InputError {
    /// The error as a `validate --output json` record.
    pub fn record(&self) -> Record {
        let (file, rule, pos) = match self {
            InputError::Open { file, .. } => (file, "input-unreadable", None),
            InputError::Manifest { file, error }
            | InputError::ClusterConfig {
                file,
                error: ClusterConfigError::Read(error),
            } => {
                let rule = match error {
                    ReadError::Io(_) | ReadError::TooLarge => "input-unreadable",
                    ReadError::Field { .. } => "input-type",
                    _ => "input-syntax",
                };
                (file, rule, position(error))
            }
            InputError::PodView { file, .. } => (file, "input-type", None),
            InputError::NetworkStatusText { file } | InputError::NetworkStatus { file, .. } => {
                (file, "input-syntax", None)
            }
            InputError::NoVm { file } => (file, "input-no-vm", None),
        };
        let read_error = match self {
            InputError::Manifest { error, .. }
            | InputError::ClusterConfig {
                error: ClusterConfigError::Read(error),
                ..
            } => Some(error),
            _ => None,
        };
        let (message, path) = match read_error {
            Some(ReadError::Field { message, path, .. }) => (message.clone(), Some(path.clone())),
            Some(ReadError::Syntax { message, .. }) => (message.clone(), None),
            Some(ReadError::NotUtf8 { offset, .. }) => (
                format!(
                    "input is not UTF-8 (invalid byte at offset {offset}); save the file as UTF-8"
                ),
                None,
            ),
            Some(other) => (other.to_string(), None),
            None => {
                // The printed text without its file prefix.
                let text = self.to_string();
                let first = text.lines().next().unwrap_or_default();
                let bare = first.strip_prefix(file.as_str()).unwrap_or(first);
                (bare.trim_start_matches(':').trim().to_string(), None)
            }
        };
        Record {
            file: file.clone(),
            object: None,
            path,
            rule: rule.to_string(),
            message,
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
        }
    }
}

fn position(error: &ReadError) -> Option<Pos> {
    let (line, column) = match error {
        ReadError::Syntax { line, column, .. }
        | ReadError::NotUtf8 { line, column, .. }
        | ReadError::Field { line, column, .. } => (*line, *column),
        _ => return None,
    };
    (line > 0).then_some(Pos { line, column })
}

/// The name to show for a path argument.
pub fn display_name(path: &str) -> String {
    if path == "-" {
        STDIN_NAME.to_string()
    } else {
        path.to_string()
    }
}

/// Reads a file (or stdin for `-`), at most [`read::MAX_INPUT_BYTES`].
pub fn read_bytes(path: &str) -> Result<Vec<u8>, InputError> {
    let file = display_name(path);
    let result = if path == "-" {
        read::read_limited(std::io::stdin().lock())
    } else {
        let f = File::open(path).map_err(|error| InputError::Open {
            file: file.clone(),
            error,
        })?;
        read::read_limited(f)
    };
    result.map_err(|error| match error {
        ReadError::Io(error) => InputError::Open {
            file: file.clone(),
            error,
        },
        error => InputError::Manifest {
            file: file.clone(),
            error,
        },
    })
}

/// A manifest file, read and parsed.
#[derive(Debug)]
pub struct Manifest {
    pub file: String,
    pub text: String,
    pub docs: Vec<Parsed>,
}

impl Manifest {
    /// Where `parsed`'s nodes are, to point messages at them.
    pub fn source<'a>(&'a self, parsed: &'a Parsed) -> output::Source<'a> {
        output::Source {
            file: &self.file,
            text: &self.text,
            node: &parsed.node,
        }
    }
}

/// Reads and parses all documents of a manifest file.
pub fn manifests(path: &str) -> Result<Manifest, InputError> {
    let bytes = read_bytes(path)?;
    let file = display_name(path);
    let docs = read::read_manifest(&bytes).map_err(|error| InputError::Manifest {
        file: file.clone(),
        error,
    })?;
    Ok(Manifest {
        file,
        text: String::from_utf8(bytes).unwrap_or_default(),
        docs,
    })
}

/// Notes each unsupported document on stderr (with the kind it was probably meant to
/// be); fails when the file holds no VM at all.
pub fn note_unsupported(manifest: &Manifest) -> Result<(), InputError> {
    let file = &manifest.file;
    let mut any_vm = false;
    for parsed in &manifest.docs {
        let Document::Unsupported { kind, name } = &parsed.doc else {
            any_vm = true;
            continue;
        };
        let shown_kind = if kind.is_empty() { "<no kind>" } else { kind };
        let name = if name.is_empty() { "<unnamed>" } else { name };
        let hint = read::kind_suggestion(kind)
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        let pos = parsed
            .node
            .get("kind")
            .map_or(parsed.node.pos, |e| e.value.pos);
        output::stderr(&manifest.source(parsed).located_line(
            pos,
            &format!("{shown_kind}/{name}: unsupported kind, skipped{hint}"),
        ));
    }
    if any_vm {
        Ok(())
    } else {
        Err(InputError::NoVm { file: file.clone() })
    }
}

/// The cluster configuration from `--cluster-config`, or KubeVirt's defaults.
pub fn cluster_config(path: Option<&str>) -> Result<ClusterConfig, InputError> {
    let Some(path) = path else {
        return Ok(ClusterConfig::default());
    };
    let bytes = read_bytes(path)?;
    let file = display_name(path);
    let (config, unknown) =
        ClusterConfig::read(&bytes).map_err(|error| InputError::ClusterConfig {
            file: file.clone(),
            error,
        })?;
    let text = String::from_utf8_lossy(&bytes);
    for u in &unknown {
        let src = output::Source {
            file: &file,
            text: &text,
            node: &netbind_spec::source::Node {
                pos: u.pos,
                shape: netbind_spec::source::Shape::Scalar,
            },
        };
        output::stderr(&src.located_line(
            u.pos,
            &format!(
                "warning: {}: {} (cluster configuration)",
                u.path,
                u.message()
            ),
        ));
    }
    Ok(config)
}

/// A pod view from a YAML or JSON file; its source becomes `file:<path>`.
pub fn pod_view_file(path: &str) -> Result<PodView, InputError> {
    let file = display_name(path);
    let bytes = read_bytes(path)?;
    let value = read::parse_single_value(&bytes).map_err(|error| InputError::Manifest {
        file: file.clone(),
        error,
    })?;
    let mut view: PodView =
        serde_path_to_error::deserialize(value).map_err(|e| InputError::PodView {
            file: file.clone(),
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
    view.source = format!("file:{path}");
    Ok(view)
}

/// The raw `k8s.v1.cni.cncf.io/network-status` annotation value from a file, checked to
/// parse as one.
pub fn network_status_file(path: &str) -> Result<String, InputError> {
    let file = display_name(path);
    let bytes = read_bytes(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| InputError::NetworkStatusText { file: file.clone() })?;
    multus::parse_network_status(&text)
        .map_err(|error| InputError::NetworkStatus { file, error })?;
    Ok(text.trim().to_string())
}

/// `FILE:LINE:COLUMN: message` plus the source line, or `FILE: …` when there is no position.
fn located(file: &str, error: &ReadError) -> String {
    match error {
        ReadError::Syntax {
            line,
            column,
            message,
            snippet,
        } if *line > 0 => {
            let mut out = format!("{file}:{line}:{column}: {message}");
            if !snippet.is_empty() {
                out.push('\n');
                out.push_str(snippet);
            }
            out
        }
        ReadError::Syntax { message, .. } => format!("{file}: {message}"),
        ReadError::NotUtf8 {
            offset,
            line,
            column,
        } => format!(
            "{file}:{line}:{column}: input is not UTF-8 (invalid byte at offset {offset}); save the file as UTF-8"
        ),
        ReadError::Field {
            doc,
            path,
            message,
            line: 0,
            ..
        } => format!("{file}: document {doc}: {path}: {message}"),
        ReadError::Field {
            path,
            message,
            line,
            column,
            snippet,
            ..
        } => {
            let mut out = format!("{file}:{line}:{column}: {path}: {message}");
            if !snippet.is_empty() {
                out.push('\n');
                out.push_str(snippet);
            }
            out
        }
        other => format!("{file}: {other}"),
    }
}

fn located_config(file: &str, error: &ClusterConfigError) -> String {
    let ClusterConfigError::Read(e) = error;
    let text = located(file, e);
    // The note goes on the first line, before the source snippet.
    match text.split_once('\n') {
        Some((first, rest)) => format!("{first} (cluster configuration)\n{rest}"),
        None => format!("{text} (cluster configuration)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_start_with_file_line_and_column() {
        let err = ReadError::Syntax {
            line: 3,
            column: 1,
            message: "tabs are not allowed".into(),
            snippet: "     3 | →domain\n       | ^".into(),
        };
        let text = located("vm.yaml", &err);
        assert!(
            text.starts_with("vm.yaml:3:1: tabs are not allowed\n"),
            "{text}"
        );
        assert!(text.ends_with('^'), "{text}");
    }

    #[test]
    fn field_errors_name_document_and_path() {
        let err = ReadError::Field {
            doc: 2,
            path: "spec.networks[0].name".into(),
            message: "expected a string".into(),
            line: 0,
            column: 0,
            snippet: String::new(),
        };
        assert_eq!(
            located("a.yaml", &err),
            "a.yaml: document 2: spec.networks[0].name: expected a string"
        );
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let err = manifests("/nonexistent/netbind/vm.yaml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/netbind/vm.yaml: cannot read:"),
            "{err}"
        );
    }
}
