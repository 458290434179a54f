//! Reading what the user hands the binary: manifests, the cluster configuration, a pod
//! view file, a network-status file.
//!
//! Every reader is bounded ([`read::read_limited`]) so a huge or endless input (a 100 MB
//! file, `/dev/zero`) costs at most a few MiB. Failures become an [`InputError`] whose
//! message is meant to be printed as is: it starts with the file name, and for syntax
//! errors with `FILE:LINE:COLUMN:` followed by the offending source line and a caret.

use std::fs::File;

use netbind_plan::PodView;
use netbind_spec::cluster::ClusterConfigError;
use netbind_spec::multus::{self, MultusError};
use netbind_spec::read::{self, ReadError};
use netbind_spec::{ClusterConfig, Document};

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

/// Reads and parses all documents of a manifest file.
pub fn manifests(path: &str) -> Result<Vec<Document>, InputError> {
    let bytes = read_bytes(path)?;
    read::parse_documents(&bytes).map_err(|error| InputError::Manifest {
        file: display_name(path),
        error,
    })
}

/// The cluster configuration from `--cluster-config`, or KubeVirt's defaults.
pub fn cluster_config(path: Option<&str>) -> Result<ClusterConfig, InputError> {
    let Some(path) = path else {
        return Ok(ClusterConfig::default());
    };
    let bytes = read_bytes(path)?;
    ClusterConfig::parse(&bytes).map_err(|error| InputError::ClusterConfig {
        file: display_name(path),
        error,
    })
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
        ReadError::Field { doc, path, message } => {
            format!("{file}: document {doc}: {path}: {message}")
        }
        other => format!("{file}: {other}"),
    }
}

fn located_config(file: &str, error: &ClusterConfigError) -> String {
    match error {
        ClusterConfigError::Read(e) => format!("{} (cluster configuration)", located(file, e)),
        other => format!("{file}: cluster configuration: {other}"),
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
