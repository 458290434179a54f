//! Reading manifests: bytes → documents → typed VM objects.
//!
//! How it works: the input is checked for size and UTF-8, then split into documents —
//! as a JSON stream when it starts with `{` or `[`, as YAML (several `---` documents)
//! otherwise. Each document becomes a `serde_json::Value` first, so that the kind can be
//! looked at before any typing, and so that a type error deeper down can be reported with
//! its field path (`spec.domain.devices.interfaces[0].ports[0].port`) in KubeVirt's words
//! (`expected an integer, got string "http"`). Beside each value goes a tree of source
//! positions ([`crate::source`]): syntax errors, type errors, unknown fields
//! ([`crate::schema`]) and, later, validation violations all carry line and column.
//!
//! What holds: no input makes this panic or allocate without bound. Input over
//! [`MAX_INPUT_BYTES`] is refused before parsing; YAML runs under a budget (nesting depth,
//! node count, alias expansion) so alias bombs and deep nesting end in an error.
//! A `kind: List` is unwrapped into its items.

use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

use crate::model::{Kind, Metadata, VmObject, VmiSpec};
use crate::schema::{self, UnknownField};
use crate::source::{self, Node, Pos, snippet};

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
    #[error("{}", field_text(*doc, path, message, *line, *column, snippet))]
    Field {
        doc: usize,
        path: String,
        message: String,
        /// 0 when the position is unknown.
        line: usize,
        column: usize,
        snippet: String,
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

fn field_text(
    doc: usize,
    path: &str,
    message: &str,
    line: usize,
    column: usize,
    snippet: &str,
) -> String {
    if line == 0 {
        format!("document {doc}: {path}: {message}")
    } else if snippet.is_empty() {
        format!("{line}:{column}: {path}: {message}")
    } else {
        format!("{line}:{column}: {path}: {message}\n{snippet}")
    }
}

/// A document as read, with where its nodes are in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub doc: Document,
    /// Positions of the object's nodes; paths are relative to the object's root.
    pub node: Node,
    /// Keys KubeVirt does not know, in file order (VMs and VMIs only).
    pub unknown: Vec<UnknownField>,
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
    Ok(read_manifest(bytes)?.into_iter().map(|p| p.doc).collect())
}

/// Parses all documents of one manifest file, keeping their positions.
pub fn read_manifest(bytes: &[u8]) -> Result<Vec<Parsed>, ReadError> {
    let text = utf8(bytes)?;
    let mut docs = Vec::new();
    for (index, (value, node)) in values(text)?.into_iter().enumerate() {
        if depth(&value) > MAX_DEPTH {
            return Err(ReadError::TooDeep { doc: index + 1 });
        }
        collect_document(text, index + 1, value, node, &mut docs)?;
    }
    Ok(docs)
}

/// Parses a file that holds exactly one YAML or JSON document (configuration files).
pub fn parse_single_value(bytes: &[u8]) -> Result<Value, ReadError> {
    Ok(parse_single(bytes)?.0)
}

/// As [`parse_single_value`], with the document's positions.
pub fn parse_single(bytes: &[u8]) -> Result<(Value, Node), ReadError> {
    let text = utf8(bytes)?;
    let mut values = values(text)?;
    if depth(values.first().map_or(&Value::Null, |(v, _)| v)) > MAX_DEPTH {
        return Err(ReadError::TooDeep { doc: 1 });
    }
    Ok(if values.is_empty() {
        (Value::Object(Default::default()), empty_node())
    } else {
        values.swap_remove(0)
    })
}

fn empty_node() -> Node {
    Node {
        pos: Pos { line: 1, column: 1 },
        shape: source::Shape::Map(Vec::new()),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, ReadError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ReadError::TooLarge);
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let (line, column) = line_column(&bytes[..offset]);
        ReadError::NotUtf8 {
            offset,
            line,
            column,
        }
    })
}

fn values(text: &str) -> Result<Vec<(Value, Node)>, ReadError> {
    if looks_like_json(text) {
        let values = json_values(text)?;
        // Positions are a help, not a need: should the rescan disagree, the documents
        // still read, with every position at the start of the file.
        let nodes = source::json_nodes(text).filter(|n| n.len() == values.len());
        Ok(match nodes {
            Some(nodes) => values.into_iter().zip(nodes).collect(),
            None => values.into_iter().map(|v| (v, empty_node())).collect(),
        })
    } else {
        yaml_values(text)
    }
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
                    snippet: snippet(text, Pos { line, column }),
                });
            }
        }
    }
    Ok(out)
}

fn yaml_values(text: &str) -> Result<Vec<(Value, Node)>, ReadError> {
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
    let values: Vec<Option<serde_saphyr::Spanned<source::Raw>>> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((0, 0));
            let message = match innermost(&e) {
                serde_saphyr::Error::Budget { breach, .. } => budget_message(breach),
                _ => without_position(&first_line(&e.without_snippet().to_string()), line, column),
            };
            ReadError::Syntax {
                line,
                column,
                snippet: snippet(text, Pos { line, column }),
                message,
            }
        })?;
    Ok(values
        .into_iter()
        .flatten()
        .map(source::split)
        .filter(|(v, _)| !v.is_null())
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

/// serde-saphyr ends messages with ` at line L, column C`; the caller shows that already.
fn without_position(message: &str, line: usize, column: usize) -> String {
    let suffix = format!(" at line {line}, column {column}");
    message.strip_suffix(&suffix).unwrap_or(message).to_string()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
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

fn collect_document(
    text: &str,
    doc: usize,
    value: Value,
    node: Node,
    out: &mut Vec<Parsed>,
) -> Result<(), ReadError> {
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
    let (doc_value, schema) = match kind.as_str() {
        "VirtualMachineInstance" => {
            let d: VmiDoc = typed(text, doc, value, &node)?;
            let obj = VmObject {
                kind: Kind::VirtualMachineInstance,
                name: d.metadata.name.unwrap_or_default(),
                namespace: d.metadata.namespace.unwrap_or_else(|| "default".into()),
                annotations: d.metadata.annotations,
                spec: d.spec,
            };
            (Document::Vm(Box::new(obj)), Some(&schema::VMI))
        }
        "VirtualMachine" => {
            let d: VmDoc = typed(text, doc, value, &node)?;
            let obj = VmObject {
                kind: Kind::VirtualMachine,
                name: d.metadata.name.unwrap_or_default(),
                namespace: d.metadata.namespace.unwrap_or_else(|| "default".into()),
                annotations: d.spec.template.metadata.annotations,
                spec: d.spec.template.spec,
            };
            (Document::Vm(Box::new(obj)), Some(&schema::VM))
        }
        "List" => {
            if let Value::Object(mut map) = value
                && let Some(Value::Array(items)) = map.remove("items")
            {
                let nodes = match node.get("items").map(|e| &e.value.shape) {
                    Some(source::Shape::Seq(nodes)) if nodes.len() == items.len() => nodes.clone(),
                    _ => vec![node.clone(); items.len()],
                };
                for (item, item_node) in items.into_iter().zip(nodes) {
                    collect_document(text, doc, item, item_node, out)?;
                }
            }
            return Ok(());
        }
        _ => (Document::Unsupported { kind, name }, None),
    };
    let unknown = schema.map_or_else(Vec::new, |s| schema::unknown_fields(&node, s, ""));
    out.push(Parsed {
        doc: doc_value,
        node,
        unknown,
    });
    Ok(())
}

/// Types a document's value; a type error names its field path and position, and says
/// what was expected in KubeVirt's words.
pub fn typed<T: for<'de> Deserialize<'de>>(
    text: &str,
    doc: usize,
    value: Value,
    node: &Node,
) -> Result<T, ReadError> {
    let actual = value.clone();
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = kube_path(&e.path().to_string());
        let message = type_message(
            &e.into_inner().to_string(),
            source::value_at(&actual, &path),
        );
        let pos = node.locate(&path);
        ReadError::Field {
            doc,
            message,
            line: pos.line,
            column: pos.column,
            snippet: snippet(text, pos),
            path,
        }
    })
}

/// serde's `invalid type: string "http", expected i64` → `expected an integer, got
/// string "http"`: Kubernetes' type names (integer, number, string, boolean, array,
/// object) instead of Rust's. Other messages pass through.
fn type_message(serde: &str, actual: Option<&Value>) -> String {
    let Some(rest) = serde.strip_prefix("invalid type: ") else {
        return serde.to_string();
    };
    let Some((got, expected)) = rest.rsplit_once(", expected ") else {
        return serde.to_string();
    };
    let expected = match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "an integer",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a boolean" => "a boolean",
        "a sequence" => "an array",
        e if e.starts_with("struct ") || e == "a map" => "an object",
        e => e,
    };
    let got = match actual {
        Some(Value::String(s)) => {
            let mut quoted = serde_json::to_string(s).unwrap_or_default();
            if quoted.chars().count() > 42 {
                quoted = quoted.chars().take(40).collect::<String>() + "…\"";
            }
            format!("string {quoted}")
        }
        Some(Value::Number(n)) if n.is_f64() => format!("number {n}"),
        Some(Value::Number(n)) => format!("integer {n}"),
        Some(Value::Bool(b)) => format!("boolean {b}"),
        Some(Value::Null) => "null".into(),
        Some(Value::Array(_)) => "an array".into(),
        Some(Value::Object(_)) => "an object".into(),
        None => got.to_string(),
    };
    format!("expected {expected}, got {got}")
}

/// serde_path_to_error writes `a.b[0].c`, already KubeVirt's notation; `?` marks an
/// unknown position, which we drop.
fn kube_path(path: &str) -> String {
    path.replace(".?", "").trim_start_matches('.').to_string()
}

/// The supported kind a misspelt `kind` was probably meant to be.
pub fn kind_suggestion(kind: &str) -> Option<&'static str> {
    ["VirtualMachineInstance", "VirtualMachine"]
        .into_iter()
        .map(|k| {
            (
                strsim::osa_distance(&kind.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
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
    fn type_error_names_the_field_path_and_position_in_kubernetes_words() {
        let err = parse_documents(b"kind: VirtualMachineInstance\nspec:\n  domain:\n    devices:\n      interfaces:\n      - name: a\n        ports:\n        - port: http\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "8:17: spec.domain.devices.interfaces[0].ports[0].port: expected an integer, got string \"http\"\n     8 |         - port: http\n       |                 ^"
        );
    }

    #[test]
    fn type_errors_of_every_shape_use_kubernetes_words() {
        let msg = |yaml: &str| match parse_documents(yaml.as_bytes()).unwrap_err() {
            ReadError::Field { path, message, .. } => format!("{path}: {message}"),
            other => panic!("{other}"),
        };
        assert_eq!(
            msg("kind: VirtualMachineInstance\nspec: {networks: {name: a}}\n"),
            "spec.networks: expected an array, got an object"
        );
        assert_eq!(
            msg("kind: VirtualMachineInstance\nspec: {networks: [{name: [a]}]}\n"),
            "spec.networks[0].name: expected a string, got an array"
        );
        assert_eq!(
            msg(
                "kind: VirtualMachineInstance\nspec: {networks: [{name: a, multus: {default: 1}}]}\n"
            ),
            "spec.networks[0].multus.default: expected a boolean, got integer 1"
        );
        assert_eq!(
            msg("kind: VirtualMachine\nspec: {template: {spec: {domain: 5}}}\n"),
            "spec.template.spec.domain: expected an object, got integer 5"
        );
        assert_eq!(
            msg(
                "kind: VirtualMachineInstance\nspec: {domain: {devices: {interfaces: [{name: a, bootOrder: 1.5}]}}}\n"
            ),
            "spec.domain.devices.interfaces[0].bootOrder: expected an integer, got number 1.5"
        );
    }

    #[test]
    fn json_type_errors_are_located_too() {
        let err = parse_documents(
            b"{\"kind\": \"VirtualMachineInstance\",\n \"spec\": {\"hostname\": 7}}",
        )
        .unwrap_err();
        let ReadError::Field { line, column, .. } = err else {
            panic!("{err}")
        };
        assert_eq!((line, column), (2, 23));
    }

    #[test]
    fn unknown_fields_are_found_in_each_object_of_a_list() {
        let docs = read_manifest(
            b"kind: List\nitems:\n- kind: VirtualMachineInstance\n  spce: {}\n- kind: VirtualMachine\n  spec: {runStrategy: Always, templat: {}}\n",
        )
        .unwrap();
        let found: Vec<_> = docs
            .iter()
            .flat_map(|p| {
                p.unknown
                    .iter()
                    .map(|u| (u.path.clone(), u.pos.line, u.suggestion))
            })
            .collect();
        assert_eq!(
            found,
            vec![
                ("spce".to_string(), 4, Some("spec")),
                ("spec.templat".to_string(), 6, Some("template")),
            ]
        );
        // Paths of a listed object start at the object: its node is the item's.
        assert_eq!(docs[1].node.locate("spec.runStrategy").line, 6);
    }

    #[test]
    fn misspelt_kinds_get_a_suggestion() {
        assert_eq!(
            kind_suggestion("VirtualMachineInstace"),
            Some("VirtualMachineInstance")
        );
        assert_eq!(kind_suggestion("virtualmachine"), Some("VirtualMachine"));
        assert_eq!(kind_suggestion("ConfigMap"), None);
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
