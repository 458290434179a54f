//! Reading manifests: bytes → documents → typed VM objects.
//!
//! How it works: the input is checked for size and UTF-8, then split into documents —
//! as a JSON stream when it starts with `{` or `[`, as YAML (several `---` documents)
//! otherwise. Each document becomes a `serde_json::Value` first, so that the kind can be
//! looked at before any typing, and so that a type error deeper down can be reported with
//! its field path (`spec.domain.devices.interfaces[0].ports[0].port`) rather than a
//! byte offset. Syntax errors carry file, line and column.
//!
//! What holds: no input makes this panic or allocate without bound. Input over
//! [`MAX_INPUT_BYTES`] is refused before parsing; YAML runs under a budget (nesting depth,
//! node count, alias expansion) so alias bombs and deep nesting end in an error.
//! A `kind: List` is unwrapped into its items.

use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

use crate::model::{Kind, Metadata, VmObject, VmiSpec};

/// Largest manifest netbind reads. Kubernetes refuses objects over 1.5 MiB (etcd's limit),
/// so 4 MiB leaves room for several objects per file and still bounds memory.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting accepted in a document.
const MAX_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read input")]
    Io(#[source] std::io::Error),
    #[error("input is larger than {} MiB; no Kubernetes object is that large", MAX_INPUT_BYTES / 1024 / 1024)]
    TooLarge,
    #[error(
        "{line}:{column}: input is not UTF-8 (invalid byte at offset {offset}); save the file as UTF-8"
    )]
    NotUtf8 {
        offset: usize,
        line: usize,
        column: usize,
    },
    #[error("{line}:{column}: {message}\n{snippet}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
        snippet: String,
    },
    #[error("document {doc}: {path}: {message}")]
    Field {
        doc: usize,
        path: String,
        message: String,
    },
    #[error("document {doc}: nesting deeper than {MAX_DEPTH} levels")]
    TooDeep { doc: usize },
}

/// One document of a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A VirtualMachine or VirtualMachineInstance.
    Vm(Box<VmObject>),
    /// Any other kind (or none): netbind does not handle it.
    Unsupported { kind: String, name: String },
}

/// Reads everything from `reader`, refusing more than [`MAX_INPUT_BYTES`].
pub fn read_limited(reader: impl Read) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    reader
        .take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(buf)
}

/// Parses all documents of one manifest file.
pub fn parse_documents(bytes: &[u8]) -> Result<Vec<Document>, ReadError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let (line, column) = line_column(&bytes[..offset]);
        ReadError::NotUtf8 {
            offset,
            line,
            column,
        }
    })?;
    let values = if looks_like_json(text) {
        json_values(text)?
    } else {
        yaml_values(text)?
    };
    let mut docs = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        if depth(&value) > MAX_DEPTH {
            return Err(ReadError::TooDeep { doc: index + 1 });
        }
        collect_document(index + 1, value, &mut docs)?;
    }
    Ok(docs)
}

/// Parses a file that holds exactly one YAML or JSON document (configuration files).
pub fn parse_single_value(bytes: &[u8]) -> Result<Value, ReadError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let (line, column) = line_column(&bytes[..offset]);
        ReadError::NotUtf8 {
            offset,
            line,
            column,
        }
    })?;
    let mut values = if looks_like_json(text) {
        json_values(text)?
    } else {
        yaml_values(text)?
    };
    if depth(values.first().unwrap_or(&Value::Null)) > MAX_DEPTH {
        return Err(ReadError::TooDeep { doc: 1 });
    }
    Ok(if values.is_empty() {
        Value::Object(Default::default())
    } else {
        values.swap_remove(0)
    })
}

fn looks_like_json(text: &str) -> bool {
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    trimmed.starts_with('{') || trimmed.starts_with('[')
}

fn json_values(text: &str) -> Result<Vec<Value>, ReadError> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value {
            Ok(v) => out.push(v),
            Err(e) => {
                let (line, column) = (e.line(), e.column());
                return Err(ReadError::Syntax {
                    line,
                    column,
                    message: e.to_string(),
                    snippet: snippet(text, line, column),
                });
            }
        }
    }
    Ok(out)
}

fn yaml_values(text: &str) -> Result<Vec<Value>, ReadError> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_documents = 20_000;
    budget.max_nodes = 2_000_000;
    budget.max_aliases = 1_000;
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // YAML 1.2 booleans: a network named `no` or `n` stays a name.
    options.strict_booleans = true;
    let values: Vec<Option<Value>> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((0, 0));
            let message = match innermost(&e) {
                serde_saphyr::Error::Budget { breach, .. } => budget_message(breach),
                _ => first_line(&e.without_snippet().to_string()),
            };
            ReadError::Syntax {
                line,
                column,
                snippet: snippet(text, line, column),
                message,
            }
        })?;
    Ok(values
        .into_iter()
        .flatten()
        .filter(|v| !v.is_null())
        .collect())
}

/// The error under serde-saphyr's snippet and alias-location wrappers.
#[allow(deprecated)] // `AliasError::msg` is deprecated; we only look through the variant.
fn innermost(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = e
    {
        e = error;
    }
    e
}

/// Says in plain words which YAML limit a document broke.
fn budget_message(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Depth { .. } => {
            format!("YAML nests deeper than {MAX_DEPTH} levels; no manifest needs that")
        }
        B::Aliases { .. }
        | B::Anchors { .. }
        | B::AliasAnchorRatio { .. }
        | B::RecordedAnchorEvents { .. }
        | B::RecordedAnchorBytes { .. } => {
            "YAML uses too many aliases or anchors (an alias bomb?); refused".into()
        }
        B::Documents { .. } => "too many YAML documents in one file".into(),
        B::Nodes { .. } | B::Events { .. } | B::ScalarBytes { .. } => {
            "YAML expands to too many nodes (an alias bomb or a huge file?); refused".into()
        }
        other => format!("YAML exceeds a parsing limit ({other:?}); refused"),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The source line at `line` with a caret under `column` (both 1-based), or nothing.
fn snippet(text: &str, line: usize, column: usize) -> String {
    let Some(src) = line.checked_sub(1).and_then(|i| text.lines().nth(i)) else {
        return String::new();
    };
    let shown: String = src.chars().take(160).collect::<String>().replace('\t', "→");
    let pad = " ".repeat(column.saturating_sub(1).min(160));
    format!("  {line:>4} | {shown}\n       | {pad}^")
}

fn line_column(prefix: &[u8]) -> (usize, usize) {
    let line = prefix.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = prefix.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Nesting depth of a value, computed without recursion.
fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        if d > MAX_DEPTH {
            break;
        }
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    max
}

#[derive(Deserialize, Default)]
struct VmiDoc {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: VmiSpec,
}

#[derive(Deserialize, Default)]
struct VmDoc {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: VmSpec,
}

#[derive(Deserialize, Default)]
struct VmSpec {
    #[serde(default)]
    template: Template,
}

#[derive(Deserialize, Default)]
struct Template {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: VmiSpec,
}

fn collect_document(doc: usize, value: Value, out: &mut Vec<Document>) -> Result<(), ReadError> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "VirtualMachineInstance" => {
            let d: VmiDoc = typed(doc, value)?;
            out.push(Document::Vm(Box::new(VmObject {
                kind: Kind::VirtualMachineInstance,
                name: d.metadata.name.unwrap_or_default(),
                namespace: d.metadata.namespace.unwrap_or_else(|| "default".into()),
                annotations: d.metadata.annotations,
                spec: d.spec,
            })));
        }
        "VirtualMachine" => {
            let d: VmDoc = typed(doc, value)?;
            out.push(Document::Vm(Box::new(VmObject {
                kind: Kind::VirtualMachine,
                name: d.metadata.name.unwrap_or_default(),
                namespace: d.metadata.namespace.unwrap_or_else(|| "default".into()),
                annotations: d.spec.template.metadata.annotations,
                spec: d.spec.template.spec,
            })));
        }
        "List" => {
            if let Value::Object(mut map) = value
                && let Some(Value::Array(items)) = map.remove("items")
            {
                for item in items {
                    collect_document(doc, item, out)?;
                }
            }
        }
        _ => out.push(Document::Unsupported { kind, name }),
    }
    Ok(())
}

fn typed<T: for<'de> Deserialize<'de>>(doc: usize, value: Value) -> Result<T, ReadError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = kube_path(&e.path().to_string());
        ReadError::Field {
            doc,
            path,
            message: e.into_inner().to_string(),
        }
    })
}

/// serde_path_to_error writes `a.b[0].c`, already KubeVirt's notation; `?` marks an
/// unknown position, which we drop.
fn kube_path(path: &str) -> String {
    path.replace(".?", "").trim_start_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vms(text: &str) -> Vec<VmObject> {
        parse_documents(text.as_bytes())
            .unwrap()
            .into_iter()
            .filter_map(|d| match d {
                Document::Vm(v) => Some(*v),
                Document::Unsupported { .. } => None,
            })
            .collect()
    }

    #[test]
    fn vm_spec_comes_from_its_template() {
        let v = vms(
            "kind: VirtualMachine\nmetadata: {name: a}\nspec:\n  template:\n    metadata:\n      annotations: {x: \"y\"}\n    spec:\n      networks: [{name: n, pod: {}}]\n",
        );
        assert_eq!(v[0].kind, Kind::VirtualMachine);
        assert_eq!(v[0].networks()[0].name, "n");
        assert_eq!(v[0].annotations["x"], "y");
        assert_eq!(v[0].namespace, "default");
    }

    #[test]
    fn several_documents_and_other_kinds() {
        let docs = parse_documents(
            b"kind: VirtualMachineInstance\n---\nkind: ConfigMap\nmetadata: {name: c}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[1],
            Document::Unsupported {
                kind: "ConfigMap".into(),
                name: "c".into()
            }
        );
    }

    #[test]
    fn json_stream_is_read() {
        let v = vms(
            r#"{"kind":"VirtualMachineInstance","metadata":{"name":"j"}} {"kind":"VirtualMachineInstance"}"#,
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "j");
    }

    #[test]
    fn type_error_names_the_field_path() {
        let err = parse_documents(b"kind: VirtualMachineInstance\nspec:\n  domain:\n    devices:\n      interfaces:\n      - name: a\n        ports:\n        - port: eighty\n").unwrap_err();
        let ReadError::Field { path, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(path, "spec.domain.devices.interfaces[0].ports[0].port");
    }

    #[test]
    fn syntax_error_has_line_and_source() {
        let err =
            parse_documents(b"kind: VirtualMachineInstance\nspec:\n\tdomain: {}\n").unwrap_err();
        let ReadError::Syntax { line, snippet, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(line, 3);
        assert!(snippet.contains("domain"), "{snippet}");
    }

    #[test]
    fn non_utf8_is_refused_with_position() {
        let err = parse_documents(b"kind: x\nname: \xff\n").unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NotUtf8 {
                    line: 2,
                    column: 7,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_inside_interfaces_are_kept() {
        let v = vms(
            "kind: VirtualMachineInstance\nspec:\n  domain:\n    devices:\n      interfaces: [{name: a, bridge: {}, colour: red}]\n",
        );
        assert!(v[0].interfaces()[0].unknown.contains_key("colour"));
    }
}
