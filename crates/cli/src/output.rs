//! Printing: violations for people and machines, and JSON/YAML documents.
//!
//! Human violations are grouped under a header `FILE: Kind/namespace/name`; each
//! violation starts with `FILE:LINE:COLUMN: PATH: message` — the form compilers use, so
//! editors jump to it — followed by the source line and a caret under the column.
//! Warnings (unknown fields, validation warnings) take the same form with `warning:`
//! after the position. Within an object everything is in file order. The JSON form is one
//! array of [`Record`]s for the whole run: violations, and input errors (a file that does
//! not read, parse or type, or holds no VM), each with its line and column.

use std::io::Write;

use netbind_spec::schema::UnknownField;
use netbind_spec::source::{Node, Pos, snippet};
use netbind_spec::validate::{Report, Violation};
use serde::Serialize;

/// One violation or input error in `netbind validate --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub file: String,
    /// `Kind/namespace/name`; null for an error about the whole file.
    pub object: Option<String>,
    /// Field path; null when the error has none (a syntax error).
    pub path: Option<String>,
    pub rule: String,
    pub message: String,
    /// 1-based; null when unknown (a file that cannot be read).
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Record {
    pub fn new(file: &str, object: &str, v: &Violation, pos: Pos) -> Record {
        Record {
            file: file.to_string(),
            object: Some(object.to_string()),
            path: Some(v.path.clone()),
            rule: v.rule.to_string(),
            message: v.message.clone(),
            line: known(pos).map(|p| p.line),
            column: known(pos).map(|p| p.column),
        }
    }
}

fn known(pos: Pos) -> Option<Pos> {
    (pos.line > 0).then_some(pos)
}

/// A VM object's file, its text and where its nodes are: what a message points into.
pub struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub node: &'a Node,
}

impl Source<'_> {
    /// `FILE:LINE:COLUMN: ` (or `FILE: ` without a position), `head`, then the snippet.
    pub fn located_line(&self, pos: Pos, head: &str) -> String {
        let file = self.file;
        let shown = snippet(self.text, pos);
        match known(pos) {
            Some(Pos { line, column }) if !shown.is_empty() => {
                format!("{file}:{line}:{column}: {head}\n{shown}\n")
            }
            Some(Pos { line, column }) => format!("{file}:{line}:{column}: {head}\n"),
            None => format!("{file}: {head}\n"),
        }
    }

    /// Violations with their positions, in file order (stable for equal positions).
    pub fn sorted<'v>(&self, violations: &'v [Violation]) -> Vec<(Pos, &'v Violation)> {
        let mut out: Vec<(Pos, &Violation)> = violations
            .iter()
            .map(|v| (self.node.locate(&v.path), v))
            .collect();
        out.sort_by_key(|(pos, _)| *pos);
        out
    }

    /// The header line and each violation with its position and source line.
    pub fn violations(&self, object: &str, violations: &[Violation]) -> String {
        let mut out = format!("{}: {object}\n", self.file);
        for (pos, v) in self.sorted(violations) {
            out.push_str(&self.located_line(pos, &format!("{}: {}", v.path, v.message)));
        }
        out
    }

    /// Unknown fields and validation warnings, in file order, for stderr.
    pub fn warnings(&self, unknown: &[UnknownField], report: &Report) -> String {
        let mut all: Vec<(Pos, String, String)> = unknown
            .iter()
            .map(|u| (u.pos, u.path.clone(), u.message()))
            .chain(
                report
                    .warnings
                    .iter()
                    .map(|w| (self.node.locate(&w.path), w.path.clone(), w.message.clone())),
            )
            .collect();
        all.sort_by_key(|(pos, _, _)| *pos);
        all.iter()
            .map(|(pos, path, message)| {
                self.located_line(*pos, &format!("warning: {path}: {message}"))
            })
            .collect()
    }
}

/// Pretty JSON with a final newline.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

pub fn yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_saphyr::to_string(value)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Writes to stdout; a closed pipe (`netbind plan … | head`) is not an error worth a panic.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

pub fn stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(path: &str, message: &str) -> Violation {
        Violation {
            path: path.into(),
            rule: "some-rule",
            message: message.into(),
        }
    }

    #[test]
    fn violations_are_located_under_a_header_in_file_order() {
        let text = "kind: VirtualMachine\nspec:\n  template:\n    spec:\n      networks: [{name: a}, {name: a}]\n";
        let (_, node) = netbind_spec::read::parse_single(text.as_bytes()).unwrap();
        let src = Source {
            file: "vm.yaml",
            text,
            node: &node,
        };
        let out = src.violations(
            "VirtualMachine/default/a",
            &[
                violation(
                    "spec.template.spec.networks[1].name",
                    "duplicate network name",
                ),
                violation("spec.template.spec.networks[0]", "first"),
            ],
        );
        assert_eq!(
            out,
            "vm.yaml: VirtualMachine/default/a\n\
vm.yaml:5:18: spec.template.spec.networks[0]: first\n     5 |       networks: [{name: a}, {name: a}]\n       |                  ^\n\
vm.yaml:5:36: spec.template.spec.networks[1].name: duplicate network name\n     5 |       networks: [{name: a}, {name: a}]\n       |                                    ^\n"
        );
    }

    #[test]
    fn json_records_have_the_contract_fields_in_order() {
        let r = Record::new(
            "a.yaml",
            "VirtualMachineInstance/ns/x",
            &violation("spec.networks[0]", "m"),
            Pos { line: 3, column: 5 },
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"file":"a.yaml","object":"VirtualMachineInstance/ns/x","path":"spec.networks[0]","rule":"some-rule","message":"m","line":3,"column":5}"#
        );
    }
}
